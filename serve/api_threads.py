"""Where the control API's blocking reads and writes run: one thread pool per app, entered
from the event loop with ``loop.run_in_executor``.

Why not FastAPI's own handoff (``def`` routes run through anyio's ``to_thread``): inside a
Ray Serve replica that handoff measured 1.2-1.9 ms a request on this project's 2-core machines
(an ``async def`` route against the same route as a plain ``def``), a third of a health read,
and 8 clients got about 106 health reads a second through it against about 160 through this
pool (``make bench``'s api suite). Routes stay written as plain functions (the Redis and SQL
clients are synchronous) and are registered through :meth:`ApiThreads.routes`, which wraps
each in a coroutine that waits for it on this pool.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["ApiThreads"]

F = TypeVar("F", bound=Callable[..., Any])


class ApiThreads:
    """A bounded pool for one app's blocking work: a hung store holds at most ``size``
    threads; requests beyond them wait their turn (the event loop, and so liveness and
    anything answered from memory, stays free)."""

    def __init__(self, size: int = 16) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="selfheal-api")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the pool, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def off_loop(self, fn: F) -> F:
        """``fn`` as a coroutine function with its signature (FastAPI reads the parameters
        and the return type through ``__wrapped__``), run on the pool; coroutine functions
        are returned as they are."""
        if inspect.iscoroutinefunction(fn):
            return fn

        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            return await self.run(functools.partial(fn, *args, **kwargs))
        return run  # type: ignore[return-value]

    def routes(self, register: Callable[..., Callable[[F], F]]) -> Callable[..., Callable[[F], F]]:
        """``app.get`` (or post, delete) that registers plain functions through
        :meth:`off_loop`."""
        def route(*args: Any, **kwargs: Any) -> Callable[[F], F]:
            def add(fn: F) -> F:
                register(*args, **kwargs)(self.off_loop(fn))
                return fn
            return add
        return route

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
