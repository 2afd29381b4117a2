"""Instrumentation (seed 3.2): latency and success per route, through an outcome sink.

:class:`InstrumentationMiddleware` is a plain ASGI middleware for FastAPI or Starlette apps;
:func:`instrument` wraps any callable, sync or async, such as a Ray Serve deployment's
methods. Both hand an :class:`~healing.outcome.OutcomeRecord` to the sink, which for a
:class:`~actors.stores.metric_stream.MetricRecorder` is an in-memory append: nothing here
touches the network on the request path.

Routes are named by their template (``GET /patients/{patient_id}``), never by the raw path,
so identifiers in URLs never reach the metrics; a request that matched no route is
``unmatched``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from healing.clock import Clock, SystemClock
from healing.outcome import OutcomeRecord, OutcomeSink
from healing.safety import Criticality, OperationType

__all__ = ["InstrumentationMiddleware", "instrument"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]

_INFO = OperationType.INFORMATIONAL
_LOW = Criticality.LOW


class InstrumentationMiddleware:
    """Records every HTTP request as ``{service}:{METHOD} {route template}``.

    A response with status >= 500, or an exception, is a failure; 4xx answers are the
    client's mistake and count as successes of the service.
    """

    def __init__(self, app: ASGIApp, sink: OutcomeSink, service: str = "http",
                 clock: Clock | None = None) -> None:
        self.app, self.sink, self.service = app, sink, service
        self.clock = clock if clock is not None else SystemClock()

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock = self.clock
        t0 = clock.now()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            ok = error is None and status < 500
            self._emit(f"{self.service}:{scope['method']} {template}", ok,
                       clock.now() - t0, error or (None if ok else f"http_{status}"))

    def _emit(self, name: str, ok: bool, latency: float, error: str | None) -> None:
        _emit(self.sink, self.clock, name, ok, latency, error)


def _emit(sink: OutcomeSink, clock: Clock, name: str, ok: bool, latency: float,
          error: str | None) -> None:
    try:
        sink.record(OutcomeRecord(name, None, ok, latency, error, "primary", None, _INFO, _LOW,
                                  clock.wall()))
    except Exception:  # instrumentation must never fail the call it measures
        return


def instrument(service: str, sink: OutcomeSink | Callable[[], OutcomeSink],
               clock: Clock | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function or method (e.g. a Serve deployment's ``__call__``) to record it.

    ``sink`` may be a factory, called once per process on first use: a Ray Serve replica
    builds its own recorder where it runs instead of pickling one from the driver.
    """
    clk = clock if clock is not None else SystemClock()
    holder: list[OutcomeSink] = []

    def get_sink() -> OutcomeSink:
        if not holder:
            holder.append(sink() if not hasattr(sink, "record") else sink)  # type: ignore[operator]
        return holder[0]

    def emit(ok: bool, t0: float, error: str | None) -> None:
        try:
            sink_ = get_sink()
        except Exception:  # a sink that cannot be built must not fail the call either
            return
        _emit(sink_, clk, service, ok, clk.now() - t0, error)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                t0 = clk.now()
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    emit(False, t0, type(exc).__name__)
                    raise
                emit(True, t0, None)
                return result
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = clk.now()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                emit(False, t0, type(exc).__name__)
                raise
            emit(True, t0, None)
            return result
        return wrapper

    return decorate
