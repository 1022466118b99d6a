"""Tests of the supervision app (monitoring)."""
