"""``/metrics``: the cluster-wide state in the Prometheus text exposition format.

Built per scrape from the stores, so one scrape of any replica sees the whole cluster (not
the replica's own counters): circuit states from their Redis hashes, call counters from the
metric streams' exact counters, workflow outcomes and detections from the orchestrator's
counters, circuit transitions and fallback answers from the audit database, the audit
spool's backlog, and each service's error budget and burn rates (the monitor's SLO summary).
Names follow Prometheus conventions: ``selfheal_`` prefix, ``_total`` counters, base units.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["exposition"]

_STATES = ("closed", "open", "half_open", "forced_open")


class _Cluster:
    """A one-shot collector over the backend's reads."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        b = self.backend
        view = b.cluster_view()  # circuits and call counters in one read
        circuits = view.circuits
        state = GaugeMetricFamily("selfheal_circuit_state",
                                  "1 for the state each circuit is in, cluster-wide",
                                  labels=["circuit", "service", "state"])
        calls = GaugeMetricFamily("selfheal_circuit_window_calls",
                                  "calls in the circuit's current window, all processes",
                                  labels=["circuit"])
        rate = GaugeMetricFamily("selfheal_circuit_failure_ratio",
                                 "failure share in the circuit's current window",
                                 labels=["circuit"])
        isolated = GaugeMetricFamily("selfheal_circuit_isolated_processes",
                                     "processes set aside as outliers", labels=["circuit"])
        known = set(_STATES) | {c["state"] for c in circuits if c["state"]}
        for c in circuits:
            for s in sorted(known):
                state.add_metric([c["name"], c["service"], s], 1.0 if c["state"] == s else 0.0)
            calls.add_metric([c["name"]], c["calls"])
            rate.add_metric([c["name"]], c["failure_rate"])
            isolated.add_metric([c["name"]], len(c["isolated"]))
        yield from (state, calls, rate, isolated)

        transitions = CounterMetricFamily("selfheal_circuit_transitions",
                                          "cluster-wide circuit transitions, by new state",
                                          labels=["circuit", "to_state"])
        for (circuit, to), n in sorted(b.transitions().items()):
            transitions.add_metric([circuit, to], n)
        yield transitions

        requests = CounterMetricFamily("selfheal_requests", "guarded calls, by service",
                                       labels=["service"])
        errors = CounterMetricFamily("selfheal_request_errors",
                                     "guarded calls whose primary failed", labels=["service"])
        fallbacks = CounterMetricFamily("selfheal_fallback_answers",
                                        "calls answered by a fallback tier", labels=["service"])
        shed = CounterMetricFamily("selfheal_requests_shed",
                                   "calls admission refused (a provider's concurrency limit "
                                   "full for their acuity; never life-critical)",
                                   labels=["service"])
        for service, counts in view.calls.items():
            requests.add_metric([service], counts.get("total", 0))
            errors.add_metric([service], counts.get("errors", 0))
            fallbacks.add_metric([service], counts.get("fallbacks", 0))
            shed.add_metric([service], counts.get("shed", 0))
        yield from (requests, errors, fallbacks, shed)

        tiers = CounterMetricFamily("selfheal_failures_served",
                                    "audited failures by the tier that answered them "
                                    "('none': failed explicitly)", labels=["service", "tier"])
        for (service, tier), n in sorted(b.fallback_use().items()):
            tiers.add_metric([service, tier], n)
        yield tiers

        runs = CounterMetricFamily("selfheal_workflow_runs", "recovery runs by outcome",
                                   labels=["service", "outcome"])
        detections = CounterMetricFamily(
            "selfheal_detections", "triggers that reached the orchestrator (circuit_open, "
            "health_check_failed, error_threshold, anomaly, memory_growth, predicted, manual)",
            labels=["service", "signal"])
        steps = CounterMetricFamily("selfheal_workflow_steps", "recovery steps by outcome",
                                    labels=["service", "action", "status"])
        for service, counts in sorted(b.workflow_counts().items()):
            for field, n in sorted(counts.items()):
                kind, _, rest = field.partition(":")
                if kind == "runs":
                    runs.add_metric([service, rest], n)
                elif kind == "triggers":
                    detections.add_metric([service, rest], n)
                else:
                    steps.add_metric([service, kind, rest], n)
        yield from (runs, steps, detections)

        segments, size = b.spool_backlog()
        yield GaugeMetricFamily("selfheal_audit_spool_segments",
                                "audit spool segments not yet all in the database",
                                value=segments)
        yield GaugeMetricFamily("selfheal_audit_spool_bytes",
                                "bytes in the audit spool", value=size)
        slo = b.slo()["services"]
        budget = GaugeMetricFamily("selfheal_slo_error_budget_remaining",
                                   "share of the SLO period's error budget left (negative: "
                                   "overspent), as the predictive monitor last computed it",
                                   labels=["service"])
        burn = GaugeMetricFamily("selfheal_slo_burn_rate",
                                 "unanswered share of requests over the window, divided by "
                                 "the error budget's share", labels=["service", "window_s"])
        for service, v in sorted(slo.items()):
            budget.add_metric([service], v["budget_remaining"])
            for window, rate in sorted(v["burn_rates"].items(), key=lambda w: float(w[0])):
                burn.add_metric([service, window], rate)
        yield budget
        yield burn


def exposition(backend: Any) -> tuple[str, str]:
    """The exposition text for one scrape, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Cluster(backend))  # type: ignore[arg-type]
    return generate_latest(registry).decode(), CONTENT_TYPE_LATEST
