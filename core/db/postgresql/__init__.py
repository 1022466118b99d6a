"""PostgreSQL backend: Django's, with pgbouncer-style idle health checks (see ``base``)."""
