"""The health monitor on the real cluster, with real probes against real servers."""

from __future__ import annotations

import http.server
import socket
import threading
import uuid

import pytest

from actors.health_checks import CheckSpec
from actors.runtime import health_monitor
from healing import ConfigError
from tests.conftest import REDIS_URL

FAST = {"fall": 2, "rise": 2, "timeout_s": 2.0, "interval_s": 60.0}


@pytest.fixture
def monitor(ray_cluster):
    name = f"health-{uuid.uuid4().hex[:8]}"
    m = health_monitor(name)
    yield m, name
    ray_cluster.kill(m)


class Listener:
    """A TCP port that can go away and come back, on loopback."""

    def __init__(self) -> None:
        self.port = 0
        self.open()

    def open(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(16)

    def close(self) -> None:
        self.sock.close()


def test_tcp_check_goes_unhealthy_with_a_trigger_and_recovers(ray_cluster, monitor):
    m, _ = monitor
    port = Listener()
    spec = CheckSpec("tcp", "tcp", f"127.0.0.1:{port.port}", FAST)
    ray_cluster.get(m.register.remote(spec, start=False))
    assert ray_cluster.get(m.run_once.remote("tcp"))["state"] == "healthy"
    port.close()
    first = ray_cluster.get(m.run_once.remote("tcp"))
    assert first["state"] == "degraded" and "ConnectionRefused" in first["last_error"]
    assert ray_cluster.get(m.run_once.remote("tcp"))["state"] == "unhealthy"
    [trigger] = ray_cluster.get(m.triggers.remote())
    assert trigger["trigger"] == "health_check_failed" and trigger["check"] == "tcp"
    port.open()
    ray_cluster.get(m.run_once.remote("tcp"))
    assert ray_cluster.get(m.run_once.remote("tcp"))["state"] == "healthy"
    [recovery] = ray_cluster.get(m.recoveries.remote())
    assert recovery["check"] == "tcp" and recovery["down_for_s"] > 0
    port.close()


def test_every_kind_of_probe_against_a_real_target(ray_cluster, monitor, pg_url):
    m, name = monitor

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args):
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    specs = [
        CheckSpec("http-ok", "http", f"{base}/ok", FAST),
        CheckSpec("http-503", "http", f"{base}/broken", FAST),
        CheckSpec("redis", "redis", REDIS_URL, FAST),
        CheckSpec("redis-down", "redis", "redis://127.0.0.1:1", FAST),
        CheckSpec("sql", "sql", pg_url, FAST),
        CheckSpec("actor", "ray_actor", f"selfheal/{name}", FAST),
        CheckSpec("callable", "callable", lambda: None, FAST),
    ]
    try:
        for spec in specs:
            ray_cluster.get(m.register.remote(spec, start=False))
            ray_cluster.get(m.run_once.remote(spec.name))
        status = ray_cluster.get(m.status.remote())
    finally:
        server.shutdown()
    assert {n: s["state"] for n, s in status.items()} == {
        "http-ok": "healthy", "http-503": "degraded", "redis": "healthy",
        "redis-down": "degraded", "sql": "healthy", "actor": "healthy", "callable": "healthy"}


def test_a_bad_check_is_refused_and_changes_nothing(ray_cluster, monitor):
    m, _ = monitor
    with pytest.raises(ConfigError, match="kind"):
        CheckSpec("x", "smoke-signal", "hill")
    with pytest.raises(Exception, match="fall"):
        ray_cluster.get(m.register.remote(CheckSpec("x", "tcp", "127.0.0.1:1", {"fall": 0})))
    assert ray_cluster.get(m.status.remote()) == {}


def test_a_started_check_runs_on_its_own(ray_cluster, monitor):
    m, _ = monitor
    ray_cluster.get(m.register.remote(CheckSpec("self", "callable", lambda: None,
                                                {"interval_s": 0.05})))
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # waiting for an event: the first run
        if ray_cluster.get(m.status.remote())["self"]["last_latency_s"] is not None:
            break
        time.sleep(0.01)
    assert ray_cluster.get(m.status.remote())["self"]["state"] == "healthy"
