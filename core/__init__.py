"""The foundation every app stands on: errors, logging, Redis, invalidation, health, environment, db backend.

``core`` imports no app of the project (Django, DRF, Redis and Celery only);
every app and the ``gateway`` project may import it.  The import-linter layers
contract in ``pyproject.toml`` enforces this.
"""
