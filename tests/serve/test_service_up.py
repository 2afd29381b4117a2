"""`selfheal up` on embedded defaults, as an operator runs it: a process of its own that
starts a Ray head node, the stores and the control API, and exits; then `status`, a token,
a request, what listens on the network, and `down`, which leaves nothing running."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import httpx
import pytest

SELFHEAL = str(pathlib.Path(sys.executable).with_name("selfheal"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening() -> list[tuple[str, int, str]]:
    """(address, port, process) of every listening TCP socket on the machine."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        addr, _, port = parts[3].rpartition(":")
        proc = parts[5].split('"')[1] if len(parts) > 5 and '"' in parts[5] else ""
        pid = parts[5].split("pid=")[1].split(",")[0] if "pid=" in line else ""
        rows.append((addr, int(port), f"{proc}:{pid}"))
    return rows


def _ours(*dirs: pathlib.Path) -> set[str]:
    """Pids of processes whose command line names one of ``dirs`` (the node `up` started,
    its embedded Redis), and of every process they started."""
    parents, named = {}, set()
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[proc.name] = (proc / "stat").read_text().rpartition(")")[2].split()[1]
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if any(str(d).encode() in cmdline for d in dirs):
                named.add(proc.name)
    ours = set()
    for pid in parents:
        p = pid
        for _ in range(64):
            if p in named:
                ours.add(pid)
                break
            p = parents.get(p, "0")
    return ours


@pytest.mark.skipif(not os.path.exists("/proc"), reason="needs Linux /proc")
def test_up_status_and_down_on_embedded_defaults(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "REDIS_URL", "DATABASE_URL", "SELFHEAL_"))}
    env.update(SELFHEAL_DATA_DIR=str(tmp_path / "data"), SELFHEAL_API_PORT=str(port))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SELFHEAL, *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300, check=False)

    up = run("up")
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        assert f"control API at http://127.0.0.1:{port}" in up.stdout
        token_file = tmp_path / "data" / "admin-token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        admin = token_file.read_text().strip()

        status = run("status")
        assert status.returncode == 0, status.stdout + status.stderr[-2000:]
        assert "answering" in status.stdout and "orchestrator: running" in status.stdout

        made = run("token", "create", "--role", "operator", "--name", "ops-test")
        assert made.returncode == 0, made.stderr
        operator = made.stdout.strip()
        url = f"http://127.0.0.1:{port}/api/v1"
        health = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {operator}"},
                           timeout=30)
        assert health.status_code == 200 and "circuits" in health.json()
        assert httpx.get(f"{url}/tokens", timeout=30,
                         headers={"Authorization": f"Bearer {admin}"}).status_code == 200

        # What listens: the API on loopback only; the embedded Redis on no TCP port at all.
        sockets = _listening()
        api = [s for s in sockets if s[1] == port]
        assert api and all(addr == "127.0.0.1" for addr, _, _ in api), api
        import json

        state = json.loads((tmp_path / "data" / "service.json").read_text())
        assert state["started_ray"] and state["ray_temp"]
        ours = _ours(tmp_path / "data", pathlib.Path(state["ray_temp"]))
        assert len(ours) > 5  # GCS, raylet, agents, the actors, Serve
        redis_pids = {p for p in ours
                      if b"redis-server" in pathlib.Path(f"/proc/{p}/cmdline").read_bytes()}
        assert redis_pids, "the embedded Redis should be running"
        assert not [s for s in sockets if s[2].split(":")[-1] in redis_pids]
        print("\nlistening while up (see docs/service.md):")
        for s in sockets:
            print("  ", s)
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr[-2000:]
    assert "selfheal is down" in down.stdout
    assert not (ours & _ours(tmp_path / "data", pathlib.Path(state["ray_temp"]))), \
        "down must leave nothing of this node running"
    assert run("status").returncode == 2  # not up here: one line, no traceback


def test_status_and_down_on_a_stale_or_broken_record_say_so_in_one_line(tmp_path):
    """A service.json left by a machine that rebooted, or not written by `up` at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SELFHEAL_"))}
    env["SELFHEAL_DATA_DIR"] = str(tmp_path)
    record = tmp_path / "service.json"
    for text, says in (('{"ray_address": "127.0.0.1:1", "url": "http://127.0.0.1:9"}',
                        "does not answer"),
                       ("not json", "is not what `selfheal up` writes")):
        record.write_text(text)
        for command in ("status", "down"):
            proc = subprocess.run([SELFHEAL, command], capture_output=True, text=True, env=env,
                                  cwd=tmp_path, timeout=60, check=False)
            assert proc.returncode == 2, proc.stderr
            assert says in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
            assert "Traceback" not in proc.stderr
        assert record.exists()  # nothing is removed behind the operator's back
