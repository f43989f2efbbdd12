"""The router: picks the backend chain for a request and makes fallback invisible (core.py),
with per-backend circuit breakers (breakers.py), the privacy rules (privacy.py), one request's
state across its attempts (run.py) and its waits (waits.py)."""

from .breakers import Breaker, Breakers
from .core import Router
from .privacy import excluded

__all__ = ["Breaker", "Breakers", "Router", "excluded"]
