"""Limitador's limit semantics as a library: no HTTP, no config file, no metrics.

Servers (the gateway) are thin layers on top, as Limitador's server is on its core crate.
"""

from maas_metrics.limiter.limiter import RateLimiter
from maas_metrics.limiter.limits import Admitted, Decision, Limit, Reservation
from maas_metrics.limiter.memory import InMemoryStore
from maas_metrics.limiter.store import BudgetCheck, CounterState, CounterStore, StoreUnavailable

__all__ = [
    "Admitted",
    "BudgetCheck",
    "CounterState",
    "CounterStore",
    "Decision",
    "InMemoryStore",
    "Limit",
    "RateLimiter",
    "Reservation",
    "StoreUnavailable",
]
