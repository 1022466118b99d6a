"""Database backends of the gateway (a thin layer over Django's own)."""
