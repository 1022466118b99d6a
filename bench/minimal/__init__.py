"""B5: a minimal Django app (no middleware, one view), the floor the gateway's own stack is measured against."""
