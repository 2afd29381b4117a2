"""Several processes writing one audit trail at once, through a database outage: it verifies
intact, every record anchored by a signed checkpoint."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from actors.settings import Settings
from actors.stores.audit_checkpoints import public_path
from actors.stores.audit_sql import AuditStore
from actors.stores.audit_trail import AuditTrail
from actors.stores.audit_verify import verify_trail
from serve.cli import main as cli

CHILD = textwrap.dedent("""
    import sys
    from actors.settings import Settings
    from actors.stores.audit_trail import AuditTrail
    from healing.audit import circuit_transition

    settings = Settings.embedded(sys.argv[1]).model_copy(
        update={"database_url": sys.argv[2], "audit_flush_interval_s": 0.05,
                "audit_checkpoint_interval_s": 0.05})
    t = AuditTrail.from_config(settings.audit_config(), b"k" * 32)

    def write(n, part):
        for i in range(n):
            t.append(circuit_transition(service="svc", at=float(i), circuit="c",
                                        from_state="CLOSED", to_state="OPEN",
                                        reason=f"{part}{i}"))

    write(20, "before")
    print("half", flush=True)
    sys.stdin.readline()          # the database is down now
    write(20, "during")
    print("done", flush=True)
    sys.stdin.readline()          # and back up
    t.close()
    print("closed", t.stats.flushed, flush=True)
""")


def test_concurrent_writers_through_a_database_outage_verify_intact(tmp_path, pg_url,
                                                                    postgres_control):
    stop, start = postgres_control
    data = tmp_path / "data"
    settings = Settings.embedded(data).model_copy(update={"database_url": pg_url})
    store = AuditStore(pg_url)
    store.migrate()
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(data), pg_url],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for _ in range(3)]
    try:
        assert [c.stdout.readline().strip() for c in children] == ["half"] * 3
        stop()
        for c in children:
            c.stdin.write("go\n")
            c.stdin.flush()
        assert [c.stdout.readline().strip() for c in children] == ["done"] * 3
        start()
        for c in children:
            c.stdin.write("close\n")
            c.stdin.flush()
        closed = [c.stdout.readline().split() for c in children]
        assert all(line and line[0] == "closed" for line in closed), closed
    finally:
        for c in children:
            c.kill() if c.poll() is None else None
            c.wait()
    # Whatever a child could not send at close is sent by the next process to start.
    store.engine.dispose()
    t = AuditTrail.from_config(settings.audit_config(), b"k" * 32)
    t.close()
    report = verify_trail(pg_url, checkpoint_logs=[settings.checkpoint_log()],
                          public_keys=[public_path(settings.signing_key_file())],
                          spool_dir=settings.spool_dir())
    assert report.findings == []
    assert report.records == 120 and report.writers == 3 and report.pending == 0
    assert report.unanchored == {}  # every writer closed with a signed checkpoint
    assert store.count() == 120
    store.dispose()
    assert cli(["audit", "verify", "--database-url", pg_url, "--checkpoint-log",
                str(settings.checkpoint_log()), "--public-key",
                str(public_path(settings.signing_key_file()))]) == 0
