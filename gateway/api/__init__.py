"""The public protocol surfaces: REST v1 and the Open Inference Protocol (v2)."""
