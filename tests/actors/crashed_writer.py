"""A process that writes audit records into a spool and is killed before it can close."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path


def crashed_writer(spool: Path, records: int) -> str:
    """Spool ``records`` transitions from a child process, SIGKILL it (no close, no flush, no
    checkpoint), and return its writer id."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from actors.stores.audit_spool import AuditSpool
        from healing.audit import circuit_transition
        s = AuditSpool({str(spool)!r})
        for i in range({records}):
            s.append(circuit_transition(service="svc", at=float(i), circuit="c",
                                        from_state="CLOSED", to_state="OPEN", reason=str(i)))
        print(s.writer, flush=True)
        import time; time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        writer = child.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert writer, "the writing process died before it wrote"
    return writer
