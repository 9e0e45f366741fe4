"""Running aikit's async cores from sync code, also inside a running loop (Jupyter).

`run_sync(coro)` runs a coroutine on one private event-loop thread and waits for it, so a sync
call works the same in a script and in a notebook cell whose loop is already running.
`sync_of(acore)` makes the sync twin of an async function with the same signature: type
checkers and `help()` see every argument of the core, none hidden in `**kwargs`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_portal_lock = threading.Lock()
_portal_loop: asyncio.AbstractEventLoop | None = None


def _portal() -> asyncio.AbstractEventLoop:
    global _portal_loop
    with _portal_lock:
        if _portal_loop is None or _portal_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="aikit-loop", daemon=True).start()
            _portal_loop = loop
        return _portal_loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on aikit's loop thread and return its result."""
    future = asyncio.run_coroutine_threadsafe(coro, _portal())
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise


def sync_of(
    core: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[[Callable[..., Any]], Callable[P, T]]:
    """Decorate a stub (its name and docstring are kept) into the sync twin of `core`.

    Example:
        >>> async def aadd(a: int, b: int = 1) -> int:
        ...     return a + b
        >>> @sync_of(aadd)
        ... def add() -> None:
        ...     "Add two numbers."
        >>> add(2, b=3)
        5
    """

    def decorate(stub: Callable[..., Any]) -> Callable[P, T]:
        @functools.wraps(core)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return run_sync(core(*args, **kwargs))

        wrapper.__name__ = stub.__name__
        wrapper.__qualname__ = stub.__qualname__
        wrapper.__doc__ = stub.__doc__
        wrapper.__module__ = stub.__module__
        return wrapper

    return decorate
