"""Django settings for the gateway, split by concern.

``core`` holds Django itself, ``services`` the database, cache, Redis and
Celery wiring, ``product`` the gateway's own knobs (quotas, inference, audit).
All of them read the environment through :mod:`core.env`.
"""

from .core import *  # noqa: F403
from .product import *  # noqa: F403
from .services import *  # noqa: F403
