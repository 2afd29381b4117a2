"""The AI providers of the chaos suite: the one stand-in, as a real HTTP server on loopback.

The outside world cannot be reached here, so the providers are faked, but only at the network
boundary: the guarding processes call them over HTTP as a provider SDK would, and a fault
switches a provider's behaviour on the server (``PUT /control/{service}:{provider}``). In
``make chaos`` the server runs in a process of its own (:class:`ProviderProcess`), as the
outside world does, so serving thousands of calls a second does not take the load
generator's interpreter lock; tests run it on a thread with a manual clock
(:class:`ProviderServer`).

A provider's mode is one of:

* ``ok``: answers in 2-10 ms;
* ``fail``: answers 503 after 10 ms;
* ``slow``: answers after ``slow_s``;
* ``hang``: holds every call until the mode changes (a provider that accepts connections and
  never answers), then drops the connection unanswered;
* ``leak``: a provider leaking memory: a call fails (503) with a probability that grows by
  ``leak_growth`` per minute since the leak began (as the simulator's ``memory_leak`` does),
  up to every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import multiprocessing
import random
import threading
import time
import urllib.parse
from typing import Any

from healing.clock import Clock, SystemClock

__all__ = ["LEAK_GROWTH", "MODES", "ProviderProcess", "ProviderServer", "Providers"]

MODES = ("ok", "fail", "slow", "hang", "leak")
LEAK_GROWTH = 0.5  # a leaking provider's failure chance, added per minute


def _answer(service: str) -> dict[str, Any]:
    return {"answer": "ok", "diagnosis": "community-acquired pneumonia", "confidence": 0.91,
            "interactions": [], "findings": ["right lower lobe opacity"], "service": service}


class _World:
    """Every provider's mode and what the server saw: the server side's state. Lives on the
    server's event loop, so it needs no lock."""

    def __init__(self, slow_s: float, leak_growth: float, hang_limit_s: float,
                 clock: Clock, rng: random.Random) -> None:
        self.slow_s, self.leak_growth, self.hang_limit_s = slow_s, leak_growth, hang_limit_s
        self.now, self.random = clock.now, rng.random
        self.modes: dict[str, str] = {}
        self.since: dict[str, float] = {}
        self.released: dict[str, asyncio.Event] = {}
        self.calls: dict[str, int] = {}
        self.holding: dict[str, int] = {}
        self.hung: dict[str, int] = {}  # the most calls held at once, per provider

    def set(self, key: str, mode: str) -> None:
        released = self.released.pop(key, None)
        if mode == "hang":
            self.released[key] = asyncio.Event()
        self.modes[key], self.since[key] = mode, self.now()
        if released is not None:
            released.set()  # the held calls are dropped

    def state(self, key: str) -> dict[str, Any]:
        return {"mode": self.modes.get(key, "ok"), "calls": self.calls.get(key, 0),
                "holding": self.holding.get(key, 0), "hung": self.hung.get(key, 0)}

    async def call(self, key: str) -> int | None:
        """What a call of ``key`` gets: an HTTP status, or None (dropped unanswered)."""
        self.calls[key] = self.calls.get(key, 0) + 1
        mode, since = self.modes.get(key, "ok"), self.since.get(key, 0.0)
        if mode == "fail" or (mode == "leak" and self.random() < min(
                1.0, self.leak_growth * (self.now() - since) / 60.0)):
            await asyncio.sleep(0.01)
            return 503
        released = self.released.get(key)
        if mode == "hang" and released is not None:
            self.holding[key] = self.holding.get(key, 0) + 1
            self.hung[key] = max(self.hung.get(key, 0), self.holding[key])
            try:
                # the bound running out ends the hang like a rollback: a forgotten one ends
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), self.hang_limit_s)
            finally:
                self.holding[key] -= 1
            return None
        await asyncio.sleep(self.slow_s if mode == "slow" else random.uniform(0.002, 0.01))
        return 200

    async def route(self, method: str, path: str, body: bytes) -> tuple[int | None, Any]:
        if method == "POST" and path.startswith("/v1/"):  # a call: /v1/{service}:{provider}
            key = path.removeprefix("/v1/")
            status = await self.call(key)
            if status == 200:
                return 200, _answer(key.split(":", 1)[0])
            return status, {"error": "unavailable"}
        key = path.removeprefix("/control/")
        if method == "GET" and path.startswith("/control/"):  # what the server saw
            return 200, self.state(key)
        if method == "PUT" and path.startswith("/control/"):  # a fault: {"mode": ...}
            try:
                mode = json.loads(body)["mode"]
            except (ValueError, KeyError, TypeError):
                return 400, {"error": 'the body must be {"mode": ...}'}
            if mode not in MODES:
                return 400, {"error": f"mode must be one of {', '.join(MODES)}"}
            self.set(key, mode)
            return 200, self.state(key)
        return 404, {"error": f"no {method} {path}"}


# a client that went away, or sent what this server does not speak: its connection just ends
_GONE = (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError)
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 503: b"Service Unavailable"}


async def _connection(world: _World, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    """One keep-alive connection: requests one after another until the client closes it.
    Just enough HTTP/1.1 for the SDK's calls (a request line, headers, a sized body);
    ``http.server`` parsed every header with the e-mail parser and cost a thread per
    connection, more than two cores could give the suite's load."""
    try:
        with contextlib.suppress(*_GONE):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = next((int(v) for n, _, v in (h.partition(":") for h in lines[1:])
                               if n.strip().lower() == "content-length"), 0)
                body = await reader.readexactly(length) if length else b""
                status, payload = await world.route(method, path, body)
                if status is None:
                    break  # dropped: no answer at all
                data = json.dumps(payload).encode()
                writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (status, _REASONS[status],
                                                                len(data), data))
                await writer.drain()
    finally:
        writer.close()


class ProviderServer:
    """The providers' HTTP server on a thread of this process (``url`` once started)."""

    def __init__(self, slow_s: float = 2.0, leak_growth: float = LEAK_GROWTH,
                 hang_limit_s: float = 300.0, *, clock: Clock | None = None,
                 rng: random.Random | None = None, port: int = 0) -> None:
        self.world = _World(slow_s, leak_growth, hang_limit_s, clock or SystemClock(),
                            rng or random.Random())
        self.port, self.url = port, ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self.serve()),
                                        name="chaos-providers", daemon=True)

    async def serve(self) -> None:
        """Serve until :meth:`close` (run on the loop of the caller's choice)."""
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(lambda r, w: _connection(self.world, r, w),
                                            "127.0.0.1", self.port)
        self.port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready.set()
        async with server:
            await self._stop.wait()
            for key in list(self.world.released):
                self.world.set(key, "ok")  # let held calls go before the server stops

    def start(self, timeout_s: float = 10.0) -> ProviderServer:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the stand-in providers' server did not start")
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(10)


def _serve(port: Any, kwargs: dict[str, Any]) -> None:
    server = ProviderServer(**kwargs)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve())
        await asyncio.to_thread(server._ready.wait)
        port.value = server.port
        await task

    asyncio.run(main())


class ProviderProcess:
    """The providers' HTTP server in a process of its own (``url`` once started)."""

    def __init__(self, **kwargs: Any) -> None:
        ctx = multiprocessing.get_context("spawn")  # nothing of this process is inherited
        self._port = ctx.Value("i", 0)
        self._proc = ctx.Process(target=_serve, args=(self._port, kwargs), daemon=True,
                                 name="chaos-providers")
        self.url = ""

    def start(self, timeout_s: float = 30.0) -> ProviderProcess:
        self._proc.start()
        deadline = time.monotonic() + timeout_s
        while not self._port.value:
            if not self._proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the stand-in providers' server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self._port.value}"
        return self

    def close(self) -> None:
        if self._proc.pid is None:
            return  # never started
        self._proc.terminate()
        self._proc.join(10)


class Providers:
    """The client side: a provider SDK's calls, and the switch a fault turns. Each thread
    keeps one keep-alive connection (``http.client``: the leanest client there is, since the
    suite makes thousands of calls a second on two cores).

    Args:
        url: the providers' server.
        timeout_s: the SDK's own timeout (generous: the guard has none yet, and a hang is
            meant to hold a call until the fault ends).
    """

    def __init__(self, url: str, timeout_s: float = 330.0) -> None:
        self.url = url
        parts = urllib.parse.urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(
                self._host, self._port, timeout=self.timeout_s)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
        except BaseException:
            conn.close()  # a connection in an unknown state is never reused
            self._local.conn = None
            raise
        return r.status, json.loads(data) if data else None

    def set(self, key: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"provider mode must be one of {', '.join(MODES)}, got {mode!r}")
        status, body = self._request("PUT", f"/control/{key}", {"mode": mode})
        if status != 200:
            raise RuntimeError(f"the providers' server refused mode {mode!r}: {body}")

    def state(self, key: str) -> dict[str, Any]:
        """The server's view of ``key``: mode, calls, calls held now and most held at once."""
        return dict(self._request("GET", f"/control/{key}")[1])

    def fn(self, key: str, service: str) -> Any:
        """A call of provider ``key`` for ``service``, as the guard is given it."""
        def call(question: str) -> dict[str, Any]:
            try:
                status, body = self._request("POST", f"/v1/{key}", {"q": question})
            except http.client.RemoteDisconnected as exc:
                raise ConnectionResetError(f"{key} dropped the connection unanswered") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise ConnectionError(f"{key} could not be reached: {exc}") from exc
            if status != 200:
                raise ConnectionError(f"{key} answered {status}")
            return dict(body)
        return call

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
