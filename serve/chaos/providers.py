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
* ``fail``: answers 503 at once;
* ``slow``: answers after ``slow_s``;
* ``hang``: holds every call until the mode changes (a provider that accepts connections and
  never answers), then drops the connection unanswered;
* ``leak``: a provider leaking memory: a call fails (503) with a probability that grows by
  ``leak_growth`` per minute since the leak began (as the simulator's ``memory_leak`` does),
  up to every call.
"""

from __future__ import annotations

import http.server
import json
import multiprocessing
import random
import threading
import time
from typing import Any

import httpx

from healing.clock import Clock, SystemClock

__all__ = ["LEAK_GROWTH", "MODES", "ProviderProcess", "ProviderServer", "Providers"]

MODES = ("ok", "fail", "slow", "hang", "leak")
LEAK_GROWTH = 0.5  # a leaking provider's failure chance, added per minute


def _answer(service: str) -> dict[str, Any]:
    return {"answer": "ok", "diagnosis": "community-acquired pneumonia", "confidence": 0.91,
            "interactions": [], "findings": ["right lower lobe opacity"], "service": service}


class _World:
    """Every provider's mode and what the server saw: the server side's state."""

    def __init__(self, slow_s: float, leak_growth: float, hang_limit_s: float,
                 clock: Clock, rng: random.Random) -> None:
        self.slow_s, self.leak_growth, self.hang_limit_s = slow_s, leak_growth, hang_limit_s
        self.now, self.random = clock.now, rng.random
        self.modes: dict[str, str] = {}
        self.since: dict[str, float] = {}
        self.released: dict[str, threading.Event] = {}
        self.calls: dict[str, int] = {}
        self.holding: dict[str, int] = {}
        self.hung: dict[str, int] = {}  # the most calls held at once, per provider
        self.lock = threading.Lock()

    def set(self, key: str, mode: str) -> None:
        with self.lock:
            released = self.released.pop(key, None)
            if mode == "hang":
                self.released[key] = threading.Event()
            self.modes[key], self.since[key] = mode, self.now()
        if released is not None:
            released.set()  # the held calls are dropped

    def state(self, key: str) -> dict[str, Any]:
        with self.lock:
            return {"mode": self.modes.get(key, "ok"), "calls": self.calls.get(key, 0),
                    "holding": self.holding.get(key, 0), "hung": self.hung.get(key, 0)}

    def call(self, key: str) -> int | None:
        """What a call of ``key`` gets: an HTTP status, or None (dropped unanswered)."""
        with self.lock:
            self.calls[key] = self.calls.get(key, 0) + 1
            mode, since = self.modes.get(key, "ok"), self.since.get(key, 0.0)
            released = self.released.get(key)
        if mode == "fail" or (mode == "leak" and self.random() < min(
                1.0, self.leak_growth * (self.now() - since) / 60.0)):
            time.sleep(0.01)
            return 503
        if mode == "hang" and released is not None:
            self._hold(key, released)
            return None
        time.sleep(self.slow_s if mode == "slow" else random.uniform(0.002, 0.01))
        return 200

    def _hold(self, key: str, released: threading.Event) -> None:
        with self.lock:
            self.holding[key] = self.holding.get(key, 0) + 1
            self.hung[key] = max(self.hung.get(key, 0), self.holding[key])
        try:
            released.wait(self.hang_limit_s)  # a bound, so a forgotten rollback ends
        finally:
            with self.lock:
                self.holding[key] -= 1


def _handler(world: _World) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a guard reuses its connections

        def do_POST(self) -> None:  # a call: /v1/{service}:{provider}
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.path.removeprefix("/v1/")
            status = world.call(key)
            if status is None:
                self.close_connection = True  # dropped: no answer at all
                return
            body = _answer(key.split(":", 1)[0]) if status == 200 else {"error": "unavailable"}
            self._send(status, body)

        def do_PUT(self) -> None:  # a fault: /control/{key} {"mode": ...}
            key = self.path.removeprefix("/control/")
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                mode = json.loads(raw)["mode"]
            except (ValueError, KeyError, TypeError):
                self._send(400, {"error": 'the body must be {"mode": ...}'})
                return
            if mode not in MODES:
                self._send(400, {"error": f"mode must be one of {', '.join(MODES)}"})
                return
            world.set(key, mode)
            self._send(200, world.state(key))

        def do_GET(self) -> None:  # what the server saw: /control/{key}
            self._send(200, world.state(self.path.removeprefix("/control/")))

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    return Handler


class ProviderServer:
    """The providers' HTTP server on a thread of this process (``url`` once started)."""

    def __init__(self, slow_s: float = 2.0, leak_growth: float = LEAK_GROWTH,
                 hang_limit_s: float = 300.0, *, clock: Clock | None = None,
                 rng: random.Random | None = None, port: int = 0) -> None:
        self.world = _World(slow_s, leak_growth, hang_limit_s, clock or SystemClock(),
                            rng or random.Random())
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                                      _handler(self.world))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="chaos-providers", daemon=True)

    def start(self) -> ProviderServer:
        self._thread.start()
        return self

    def close(self) -> None:
        for key in list(self.world.released):
            self.world.set(key, "ok")  # let held calls go before the server stops
        self.server.shutdown()
        self.server.server_close()


def _serve(port: Any, kwargs: dict[str, Any]) -> None:
    server = ProviderServer(**kwargs)
    port.value = server.server.server_address[1]
    server.server.serve_forever()


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
    """The client side: a provider SDK's calls, and the switch a fault turns.

    Args:
        url: the providers' server.
        timeout_s: the SDK's own timeout (generous: the guard has none yet, and a hang is
            meant to hold a call until the fault ends).
    """

    def __init__(self, url: str, timeout_s: float = 330.0) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=timeout_s, limits=httpx.Limits(
            max_connections=256, max_keepalive_connections=128))

    def set(self, key: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"provider mode must be one of {', '.join(MODES)}, got {mode!r}")
        self._http.put(f"/control/{key}", json={"mode": mode}).raise_for_status()

    def state(self, key: str) -> dict[str, Any]:
        """The server's view of ``key``: mode, calls, calls held now and most held at once."""
        return dict(self._http.get(f"/control/{key}").json())

    def fn(self, key: str, service: str) -> Any:
        """A call of provider ``key`` for ``service``, as the guard is given it."""
        http_ = self._http

        def call(question: str) -> dict[str, Any]:
            try:
                r = http_.post(f"/v1/{key}", json={"q": question})
            except httpx.RemoteProtocolError as exc:
                raise ConnectionResetError(f"{key} dropped the connection unanswered") from exc
            except httpx.TransportError as exc:
                raise ConnectionError(f"{key} could not be reached: {exc}") from exc
            if r.status_code != 200:
                raise ConnectionError(f"{key} answered {r.status_code}")
            return dict(r.json())
        return call

    def close(self) -> None:
        self._http.close()
