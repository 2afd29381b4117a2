"""The orchestrator's error-threshold watch: the threshold in force per service (adopted
and reverted with its history, kept in the actor's state so that they survive a restart),
and the rounds that check them against the services' metric streams.

The decision is :class:`healing.recovery.ErrorThresholdRule`, the simulator's as well; this
holds what the live orchestrator keeps around it."""

from __future__ import annotations

from typing import Any

from healing.recovery import ErrorThresholdRule

__all__ = ["WATCH_KEPT", "ErrorWatch"]

WATCH_KEPT = 720  # the watch's newest rounds (selfheal:{name}:watch): an hour at 5 s

Threshold = tuple[float, float]  # (error rate, window in seconds)


class ErrorWatch:
    """Thresholds per service and the rounds that check them.

    Args:
        thresholds: service -> (error rate, window in seconds) at start.
        min_calls, z: the rule's evidence (:class:`ErrorThresholdRule`).
        evidence: reads (errors, calls) over windows of a service's stream
            (:class:`actors.recovery_actions.LiveEvidence`).
        state: the actor's persisted state (:class:`actors.stores.actor_state.ActorState`),
            or None.
    """

    def __init__(self, thresholds: dict[str, Threshold], min_calls: int, z: float,
                 evidence: Any, state: Any) -> None:
        self.thresholds = dict(thresholds)
        self.min_calls, self.z = min_calls, z
        self.evidence, self.state = evidence, state
        self._history: dict[str, list[Threshold | None]] = {}

    def restore(self) -> None:
        """The thresholds and their history as the last actor left them."""
        for service, value in self.state.table("thresholds").items():
            if value is None:
                self.thresholds.pop(service, None)
            else:
                self.thresholds[service] = (float(value[0]), float(value[1]))
        for service, earlier in self.state.table("threshold_history").items():
            self._history[service] = [None if e is None else tuple(e) for e in earlier]

    def adopt(self, service: str, threshold: float, window_s: float
              ) -> tuple[Threshold | None, Threshold]:
        """Put a threshold in force; returns (old, new)."""
        old = self.thresholds.get(service)
        self._history.setdefault(service, []).append(old)
        self.thresholds[service] = (float(threshold), float(window_s))
        self._save(service)
        return old, self.thresholds[service]

    def revert(self, service: str) -> tuple[Threshold | None, Threshold | None]:
        """Go back to the threshold before the last change (none: no threshold at all);
        returns (old, new). Raises ValueError when there was no change."""
        earlier = self._history.get(service)
        if not earlier:
            raise ValueError(f"{service}: no earlier error threshold to go back to")
        old, new = self.thresholds.get(service), earlier.pop()
        if new is None:
            self.thresholds.pop(service, None)
        else:
            self.thresholds[service] = new
        self._save(service)
        return old, new

    def read(self, now: float) -> dict[str, tuple[ErrorThresholdRule, list[float]]]:
        """One round: per watched service, its rule and what it read at ``now``: [errors,
        calls] over the window, then over the window's recent part (the rule's arguments)."""
        out = {}
        for service, (threshold, window_s) in self.thresholds.items():
            rule = ErrorThresholdRule(threshold, window_s, self.min_calls, self.z)
            (errors, calls), (recent_errors, recent_calls) = self.evidence.windows(
                service, (window_s, rule.recent_s), now)
            out[service] = (rule, [errors, calls, recent_errors, recent_calls])
        return out

    def keep(self, now: float, took_s: float, seen: dict[str, list[float]],
             admitted: dict[str, str]) -> None:
        """Keep a round with what it read of every service, fired or not (GET
        /api/v1/watch): "why did the watch not fire at 5 s?" is answered by its readings,
        and by how long the round took on the event loop (a chaos run's late detection
        could not be explained without)."""
        if self.state is None or not seen:
            return
        self.state.append("watch", {
            "at": now, "took_s": round(took_s, 4),
            "services": {s: {"errors": c[0], "calls": c[1], "recent_errors": c[2],
                             "recent_calls": c[3], "admitted": admitted.get(s)}
                         for s, c in seen.items()}}, keep=WATCH_KEPT)

    def _save(self, service: str) -> None:
        if self.state is not None:
            self.state.put("thresholds", service, self.thresholds.get(service))
            self.state.put("threshold_history", service, self._history.get(service, []))
