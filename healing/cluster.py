"""The cluster-wide circuit: one decision over the outcomes every process reports.

Shared breaker state is what users of resilience4j, Polly, Hystrix and Sentinel ask for, and
what their maintainers refuse, because one sick node would open the circuit for everyone.
:class:`ClusterCircuit` opens cluster-wide only when the failure is shared:

* the merged window (every process's window, outliers left out) reaches the circuit's
  failure or slow-call threshold over its minimum number of calls, and
* either a quorum of processes each see the failure themselves, or no single process holds
  more than ``max_dominance`` of the merged window's failures (a process alone in the
  cluster is the whole cluster). Processes :meth:`join` when they start, so a member that
  has made no calls yet still counts.

A process whose failure rate is an outlier against the others (Envoy's success-rate test:
below mean - k*stdev, among at least ``outlier_min_processes`` processes with enough calls) is
reported as isolated and left out of the shared decision; its own local breaker protects it.

When the circuit is OPEN and its wait has passed, one process at a time holds the probe lease
(with an expiry) and runs the trial calls; the trials it reports decide CLOSED or OPEN again,
with the wait growing as the circuit's config says. Every method takes ``now`` in UTC epoch
seconds: time is data here, because reports come from many processes.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .config import CircuitConfig, _check, check_count, check_positive, check_ratio
from .errors import ConfigError
from .window import CountWindow, TimeWindow, window_for

__all__ = ["ClusterCircuit", "ClusterPolicy", "ClusterState", "ClusterView", "Lease"]


class ClusterState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # a probe lease is out
    FORCED_OPEN = "forced_open"


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    """When a failure counts as shared, and how probing is shared out."""

    quorum: int = 2
    max_dominance: float = 0.6
    outlier_k: float = 1.9  # Envoy's success_rate_stdev_factor (1900 / 1000)
    outlier_min_processes: int = 3
    outlier_min_calls: int = 10
    probe_lease_s: float = 10.0
    process_ttl_s: float = 60.0

    def __post_init__(self) -> None:
        check_count("quorum", self.quorum)
        check_ratio("max_dominance", self.max_dominance)
        check_positive("outlier_k", self.outlier_k)
        check_count("outlier_min_processes", self.outlier_min_processes, minimum=2)
        check_count("outlier_min_calls", self.outlier_min_calls)
        check_positive("probe_lease_s", self.probe_lease_s)
        check_positive("process_ttl_s", self.process_ttl_s)


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What every process is told: enough to act without asking again."""

    name: str
    version: int
    state: ClusterState
    retry_at: float | None  # UTC epoch s; when a probe lease may next be granted
    lease: Lease | None
    isolated: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "state": self.state.value,
                "retry_at": self.retry_at, "isolated": list(self.isolated),
                "lease_holder": self.lease.holder if self.lease else None,
                "lease_expires_at": self.lease.expires_at if self.lease else None,
                "reason": self.reason}


@dataclass
class _Process:
    window: CountWindow | TimeWindow
    last_seen: float


@dataclass
class ClusterCircuit:
    """The actor's state for one circuit; pure, so it runs in tests without Ray."""

    name: str
    config: CircuitConfig = field(default_factory=CircuitConfig)
    policy: ClusterPolicy = field(default_factory=ClusterPolicy)

    def __post_init__(self) -> None:
        self.state = ClusterState.CLOSED
        self.version = 0
        self.retry_at: float | None = None
        self.lease: Lease | None = None
        self.consecutive_opens = 0
        self.isolated: tuple[str, ...] = ()
        self.reason = "initial"
        self._processes: dict[str, _Process] = {}
        self._trials: CountWindow | None = None

    # -- reading -----------------------------------------------------------------------

    def view(self) -> ClusterView:
        return ClusterView(self.name, self.version, self.state, self.retry_at, self.lease,
                           self.isolated, self.reason)

    def process_rates(self, now: float) -> dict[str, tuple[int, float]]:
        """Each live process's (calls, failure rate) over its window."""
        out = {}
        for pid, p in self._live(now):
            p.window.roll(now)
            out[pid] = (p.window.calls, p.window.failed / p.window.calls if p.window.calls
                        else 0.0)
        return out

    # -- membership and reports --------------------------------------------------------

    def join(self, process: str, now: float) -> ClusterView:
        """Register ``process`` before it reports: a member with no calls yet still counts
        when judging whether a failure is shared (otherwise whoever reports first would look
        like the whole cluster)."""
        p = self._processes.get(process)
        if p is None:
            self._processes[process] = _Process(window_for(self.config), now)
        else:
            p.last_seen = now
        return self.view()

    def report(self, process: str, outcomes: Iterable[tuple[float, int, bool]],
               now: float) -> ClusterView | None:
        """Take ``(at, code, is_trial)`` outcomes from ``process``; the new view if the
        cluster state changed, else None."""
        p = self._processes.get(process)
        if p is None:
            p = self._processes[process] = _Process(window_for(self.config), now)
        p.last_seen = now
        trials = []
        for at, code, is_trial in outcomes:
            if is_trial:
                trials.append(code)
            else:
                p.window.record(code, at)
        before = self.version
        if trials and self.state is ClusterState.HALF_OPEN and self.lease is not None \
                and self.lease.holder == process:
            self._take_trials(trials, now)
        elif self.state is ClusterState.CLOSED:
            self._decide_closed(now)
        return self.view() if self.version != before else None

    def _decide_closed(self, now: float) -> None:
        cfg = self.config
        rates = self.process_rates(now)  # every live member, with or without calls
        isolated = self._outliers(rates)
        if isolated != self.isolated:
            self.isolated = isolated
            self._bump("isolated " + (", ".join(p[:8] for p in isolated) or "none"))
        counted = [pid for pid in rates if pid not in isolated]
        calls = failed = slow = 0
        failures_by_process = {}
        for pid in counted:
            w = self._processes[pid].window
            calls += w.calls
            failed += w.failed
            slow += w.slow
            failures_by_process[pid] = w.failed
        if calls < cfg.minimum_number_of_calls or calls == 0:
            return
        fr, sr = failed / calls, slow / calls
        if fr < cfg.failure_rate_threshold and sr < cfg.slow_call_rate_threshold:
            return
        if len(counted) > 1:
            seeing = sum(1 for pid in counted if rates[pid][0] > 0
                         and (rates[pid][1] >= cfg.failure_rate_threshold))
            dominance = max(failures_by_process.values()) / failed if failed else 0.0
            if seeing < self.policy.quorum and dominance > self.policy.max_dominance:
                return  # one process's trouble, not the provider's: its own breaker acts
        self.consecutive_opens = 1
        self._open(now, f"shared failure: rate {fr:.0%} over {calls} calls from "
                        f"{len(counted)} process(es)")

    def _outliers(self, rates: dict[str, tuple[int, float]]) -> tuple[str, ...]:
        pol = self.policy
        eligible = {pid: 1.0 - fr for pid, (n, fr) in rates.items() if n >= pol.outlier_min_calls}
        if len(eligible) < pol.outlier_min_processes:
            return ()
        mean = sum(eligible.values()) / len(eligible)
        sd = math.sqrt(sum((v - mean) ** 2 for v in eligible.values()) / len(eligible))
        floor = mean - pol.outlier_k * sd
        thr = self.config.failure_rate_threshold
        return tuple(sorted(pid for pid, sr in eligible.items()
                            if sr < floor and 1.0 - sr >= thr))

    # -- probing -----------------------------------------------------------------------

    def acquire_probe(self, process: str, now: float) -> ClusterView:
        """Ask for the probe lease; the view says who holds it (the caller, or not)."""
        self._expire_lease(now)
        if (self.state in (ClusterState.OPEN, ClusterState.FORCED_OPEN)
                and self.retry_at is not None and now >= self.retry_at):
            self.state = ClusterState.HALF_OPEN
            self.lease = Lease(process, now + self.policy.probe_lease_s)
            self._trials = CountWindow(self.config.permitted_calls_in_half_open)
            self._bump(f"probe lease to {process[:40]}")  # a process id, bounded
        return self.view()

    def tick(self, now: float) -> ClusterView | None:
        """Time-driven changes: an expired lease, processes that stopped reporting."""
        before = self.version
        self._expire_lease(now)
        for pid in [pid for pid, p in self._processes.items()
                    if now - p.last_seen > self.policy.process_ttl_s]:
            del self._processes[pid]
        return self.view() if self.version != before else None

    def _expire_lease(self, now: float) -> None:
        if self.state is ClusterState.HALF_OPEN and self.lease and now >= self.lease.expires_at:
            # The holder went quiet: hand the probe to whoever asks next.
            self.state, self.lease, self.retry_at = ClusterState.OPEN, None, now
            self._bump("probe lease expired")

    def _take_trials(self, codes: list[int], now: float) -> None:
        t = self._trials
        assert t is not None  # HALF_OPEN always has a trial window
        for code in codes[: t.size - t.calls]:
            t.record(code, now)
        if t.calls < t.size:
            return
        cfg = self.config
        fr, sr = t.failed / t.calls, t.slow / t.calls
        if fr >= cfg.failure_rate_threshold or sr >= cfg.slow_call_rate_threshold:
            self.consecutive_opens += 1
            self._open(now, f"trial calls failed ({fr:.0%})")
        else:
            self._close(now, "trial calls succeeded")

    # -- operators ---------------------------------------------------------------------

    def force_open(self, now: float, reason: str = "forced open by operator",
                   until: float | None = None) -> ClusterView:
        """Open for every process; from ``until`` on (if given) the probe lease is handed
        out as after an ordinary open, so trial calls decide. Kept in the snapshot, so the
        end of a workflow's force survives the restart of any actor."""
        self.state, self.lease, self.retry_at = ClusterState.FORCED_OPEN, None, until
        self._bump(reason)
        return self.view()

    def reset(self, now: float, reason: str = "reset by operator") -> ClusterView:
        self.consecutive_opens = 0
        self._close(now, reason)
        return self.view()

    # -- snapshot ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to resume after a restart (windows are rebuilt by reports)."""
        return {"version": self.version, "state": self.state.value, "retry_at": self.retry_at,
                "consecutive_opens": self.consecutive_opens, "reason": self.reason,
                "isolated": list(self.isolated),
                "lease": [self.lease.holder, self.lease.expires_at] if self.lease else None}

    def restore(self, data: dict[str, Any]) -> None:
        _check(isinstance(data, dict), "snapshot", data, "must be a dict")
        try:
            state = ClusterState(data["state"])
            version = int(data["version"])
        except (KeyError, ValueError, TypeError):
            raise ConfigError("snapshot", data, "is not a ClusterCircuit snapshot") from None
        self.state, self.version = state, version
        self.retry_at = data.get("retry_at")
        self.consecutive_opens = int(data.get("consecutive_opens", 0))
        self.reason = str(data.get("reason", ""))
        self.isolated = tuple(data.get("isolated", ()))
        lease = data.get("lease")
        self.lease = Lease(lease[0], float(lease[1])) if lease else None
        if state is ClusterState.HALF_OPEN:
            self._trials = CountWindow(self.config.permitted_calls_in_half_open)

    # -- internals ---------------------------------------------------------------------

    def _live(self, now: float) -> list[tuple[str, _Process]]:
        ttl = self.policy.process_ttl_s
        return [(pid, p) for pid, p in self._processes.items() if now - p.last_seen <= ttl]

    def _open(self, now: float, reason: str) -> None:
        self.state, self.lease = ClusterState.OPEN, None
        self.retry_at = now + self.config.wait_for_open_number(self.consecutive_opens)
        self._bump(reason)

    def _close(self, now: float, reason: str) -> None:
        self.state, self.lease, self.retry_at = ClusterState.CLOSED, None, None
        self.consecutive_opens = 0
        self._trials = None
        for p in self._processes.values():  # a fresh start, as a local CLOSED has
            p.window = window_for(self.config)
        self._bump(reason)

    def _bump(self, reason: str) -> None:
        self.version += 1
        self.reason = reason
