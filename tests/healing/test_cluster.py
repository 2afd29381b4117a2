"""The cluster-wide circuit: shared failures open it, one sick process does not."""

from __future__ import annotations

import pytest

from healing import CircuitConfig, ConfigError
from healing.cluster import ClusterCircuit, ClusterPolicy, ClusterState
from healing.window import FAILED

CFG = CircuitConfig(window_size=20, minimum_number_of_calls=10, failure_rate_threshold=0.5,
                    wait_in_open_s=30.0, wait_multiplier=2.0, permitted_calls_in_half_open=2)


def calls(n_ok: int, n_fail: int, at: float = 0.0, trial: bool = False):
    return [(at, 0, trial)] * n_ok + [(at, FAILED, trial)] * n_fail


def circuit(*members: str, **policy) -> ClusterCircuit:
    c = ClusterCircuit("svc", CFG, ClusterPolicy(**policy))
    for m in members:
        c.join(m, 0.0)
    return c


def test_failure_seen_by_a_quorum_opens_the_circuit_for_everyone():
    c = circuit("a", "b")
    assert c.report("a", calls(2, 6), 0.0) is None
    view = c.report("b", calls(3, 5), 0.0)
    assert view.state is ClusterState.OPEN and view.retry_at == 30.0
    assert "shared failure" in view.reason


def test_one_sick_process_reporting_first_does_not_open_the_circuit_for_everyone():
    c = circuit("sick", "healthy", "healthy2")
    c.report("sick", calls(0, 10), 0.0)  # before the others have said anything
    assert c.state is ClusterState.CLOSED
    c.report("healthy", calls(10, 0), 0.0)
    c.report("healthy2", calls(10, 0), 0.0)
    assert c.state is ClusterState.CLOSED


def test_dominated_window_does_not_open_even_when_merged_rate_is_high():
    # Two processes: the merged rate is 55 %, but one process holds every failure.
    c = circuit("a", "b", outlier_min_processes=5)
    c.report("a", calls(0, 11), 0.0)
    c.report("b", calls(9, 0), 0.0)
    assert c.state is ClusterState.CLOSED


def test_failures_spread_across_processes_open_without_a_quorum():
    # Only two of the three needed see >= 50 % themselves, but nobody dominates the merged
    # window (5 and 4 of its 9 failures), so the failure is shared.
    c = circuit("a", "b", "c", quorum=3)
    assert c.report("a", calls(3, 5), 0.0) is None  # 8 calls: under the minimum of 10
    view = c.report("b", calls(4, 4), 0.0)
    assert view is not None and view.state is ClusterState.OPEN


def test_an_outlier_is_isolated_and_left_out_of_the_shared_decision():
    c = circuit("a", "b", "c", "d", "e", outlier_min_processes=3)
    for pid in ("a", "b", "c", "d"):
        c.report(pid, calls(19, 1), 0.0)
    view = c.report("e", calls(2, 18), 0.0)
    assert view.isolated == ("e",) and view.state is ClusterState.CLOSED


def test_a_lone_process_is_the_whole_cluster():
    c = circuit()
    view = c.report("only", calls(2, 8), 0.0)
    assert view.state is ClusterState.OPEN


def test_probe_lease_goes_to_one_process_after_the_wait_and_expires():
    c = circuit(probe_lease_s=5.0)
    c.report("a", calls(0, 10), 0.0)
    assert c.acquire_probe("a", 29.0).lease is None  # the wait has not passed
    first = c.acquire_probe("a", 30.0)
    assert first.state is ClusterState.HALF_OPEN and first.lease.holder == "a"
    assert c.acquire_probe("b", 31.0).lease.holder == "a"  # no stampede
    expired = c.tick(35.0)
    assert expired.state is ClusterState.OPEN and expired.reason == "probe lease expired"
    assert c.acquire_probe("b", 35.0).lease.holder == "b"


def test_trials_from_the_lease_holder_close_or_reopen_with_a_longer_wait():
    c = circuit()
    c.report("a", calls(0, 10), 0.0)
    c.acquire_probe("a", 30.0)
    c.report("b", calls(0, 2, trial=True), 30.5)  # not the holder: not trials
    assert c.state is ClusterState.HALF_OPEN
    view = c.report("a", calls(1, 1, trial=True), 31.0)
    assert view.state is ClusterState.OPEN and view.retry_at == 31.0 + 60.0  # 30 s x 2
    c.acquire_probe("b", 91.0)
    view = c.report("b", calls(2, 0, trial=True), 92.0)
    assert view.state is ClusterState.CLOSED and c.consecutive_opens == 0


def test_every_change_bumps_the_version_and_snapshot_restores_it():
    c = circuit()
    c.report("a", calls(0, 10), 0.0)
    c.acquire_probe("a", 30.0)
    snap = c.snapshot()
    d = circuit()
    d.restore(snap)
    assert d.view() == c.view() and d.version == 2
    with pytest.raises(ConfigError, match="snapshot"):
        circuit().restore({"state": "melted", "version": 1})


def test_operators_force_open_and_reset():
    c = circuit()
    assert c.force_open(1.0).state is ClusterState.FORCED_OPEN
    assert c.acquire_probe("a", 1e9).lease is None  # forced: no probing
    assert c.reset(2.0).state is ClusterState.CLOSED


def test_a_workflows_timed_force_hands_the_probe_lease_out_when_it_ends_even_after_restore():
    c = circuit()
    c.force_open(1.0, "workflow: traffic moved", until=11.0)
    assert c.acquire_probe("a", 10.9).lease is None
    d = circuit()
    d.restore(c.snapshot())  # the circuit actor restarted in between
    view = d.acquire_probe("a", 11.0)
    assert view.state is ClusterState.HALF_OPEN and view.lease.holder == "a"


def test_processes_that_stop_reporting_are_forgotten():
    c = circuit(process_ttl_s=10.0)
    c.report("gone", calls(0, 9), 0.0)
    c.tick(11.0)
    c.report("new", calls(9, 1), 11.0)
    assert c.state is ClusterState.CLOSED and set(c.process_rates(11.0)) == {"new"}


@pytest.mark.parametrize("kwargs,field", [({"quorum": 0}, "quorum"),
                                          ({"max_dominance": 1.5}, "max_dominance"),
                                          ({"probe_lease_s": 0}, "probe_lease_s")])
def test_policy_is_validated(kwargs, field):
    with pytest.raises(ConfigError) as err:
        ClusterPolicy(**kwargs)
    assert err.value.field == field
