"""Progress reports from a running handler to its consumer's liveness heartbeat.

`/healthz` fails when a consumer's heartbeat is old. A handler that works for a
long time (a page waiting on Rev.io's rate limit) calls `beat()` as it makes
progress, so a slow but healthy daemon is not restarted.
"""

from collections.abc import Callable
from contextvars import ContextVar

_listener: ContextVar[Callable[[], None] | None] = ContextVar("heartbeat_listener", default=None)


def set_listener(listener: Callable[[], None]) -> None:
    """Route this task's `beat()` calls to `listener`; each handler task sets its own."""
    _listener.set(listener)


def beat() -> None:
    """Record that the current handler made progress."""
    listener = _listener.get()
    if listener is not None:
        listener()
