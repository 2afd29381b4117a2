"""The frames every source of :mod:`actors.frames` gives, built on a few raw reads each
source provides (a running service's stores, simulation event logs)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import pandas as pd

from healing.audit import AuditKind
from healing.errors import SelfHealError

from . import frames_build as build
from .frames_build import TimeLike, as_epoch, frame, service_list

__all__ = ["Frames", "FramesError"]


class FramesError(SelfHealError):
    """A source cannot be read: names the path or store, and why."""


class Frames(ABC):
    """The loaders both sources share; each source provides the raw reads."""

    mlflow_uri: str | None = None

    # -- raw reads, per source -----------------------------------------------------------

    @abstractmethod
    def _outcomes(self, start: float | None, end: float | None,
                  services: list[str] | None) -> Iterator[tuple[str, float, pd.DataFrame]]:
        """Per run: its name, its sample rate, and its events (``at, service, latency_s,
        ok, error_kind, tier, provider``)."""

    @abstractmethod
    def _audit(self, kind: AuditKind, start: float | None, end: float | None,
               services: list[str] | None) -> pd.DataFrame:
        """The audit records of ``kind`` as their typed table's rows (``record_id, at, ...``,
        with ``run``)."""

    @abstractmethod
    def _runs(self, start: float | None, end: float | None,
              services: list[str] | None) -> pd.DataFrame:
        """Workflow run summaries (``run_id, workflow, service, trigger, started_at, ...``)
        that started in the range."""

    @abstractmethod
    def _detections(self, start: float | None, end: float | None,
                    services: list[str] | None) -> pd.DataFrame:
        """Triggers in the range (``run, at, service, trigger, detail, admitted``)."""

    @abstractmethod
    def _trouble(self, start: float | None, end: float | None,
                 services: list[str] | None) -> pd.DataFrame:
        """Trouble spans overlapping the range, cut to it (``run, service, start, end``)."""

    # -- the frames --------------------------------------------------------------------

    def outcomes(self, start: TimeLike = None, end: TimeLike = None,
                 services: str | list[str] | None = None) -> pd.DataFrame:
        """Guarded calls as the metric streams keep them: every error, a sample of the
        successes; ``weight`` is how many calls each stands for."""
        s, e, names = args(start, end, services)
        parts = [build.outcome_frame(run, rate, raw) for run, rate, raw in
                 self._outcomes(s, e, names)]
        return build.concat(parts, "outcomes")

    def metrics(self, start: TimeLike = None, end: TimeLike = None,
                services: str | list[str] | None = None, freq: str = "1min") -> pd.DataFrame:
        """Per run, service and ``freq`` (a minute by default): requests, errors, the error
        rate of the primary, fallbacks, unanswered requests, latency quantiles."""
        return build.metrics(self.outcomes(start, end, services), freq)

    def failures(self, start: TimeLike = None, end: TimeLike = None,
                 services: str | list[str] | None = None) -> pd.DataFrame:
        """The audit trail's failure events: who was affected (pseudonyms), what failed,
        which tier served, the integrity check, the patient impact."""
        return self._audit_frame(AuditKind.FAILURE_EVENT, start, end, services)

    def recovery_steps(self, start: TimeLike = None, end: TimeLike = None,
                       services: str | list[str] | None = None) -> pd.DataFrame:
        return self._audit_frame(AuditKind.RECOVERY_STEP, start, end, services)

    def circuit_transitions(self, start: TimeLike = None, end: TimeLike = None,
                            services: str | list[str] | None = None) -> pd.DataFrame:
        return self._audit_frame(AuditKind.CIRCUIT_TRANSITION, start, end, services)

    def operator_actions(self, start: TimeLike = None, end: TimeLike = None,
                         services: str | list[str] | None = None) -> pd.DataFrame:
        """Changes made by people (as pseudonyms) and by selfheal's own automation: resets,
        forced opens, threshold changes, promotions, predictions acted on."""
        return self._audit_frame(AuditKind.OPERATOR_ACTION, start, end, services)

    def workflow_runs(self, start: TimeLike = None, end: TimeLike = None,
                      services: str | list[str] | None = None) -> pd.DataFrame:
        """Recovery workflow runs that started in the range: trigger, outcome, duration."""
        return frame(self._runs(*args(start, end, services)), "workflow_runs")

    def detections(self, start: TimeLike = None, end: TimeLike = None,
                   services: str | list[str] | None = None) -> pd.DataFrame:
        """Every trigger that reached the orchestrator (or the simulated one)."""
        return frame(self._detections(*args(start, end, services)), "detections")

    def trouble(self, start: TimeLike = None, end: TimeLike = None,
                services: str | list[str] | None = None) -> pd.DataFrame:
        """When each service was in trouble: the simulated faults' ground truth, or, live,
        the spans a circuit of the service stood open."""
        return frame(self._trouble(*args(start, end, services)), "trouble")

    def history(self, start: TimeLike = None, end: TimeLike = None,
                services: str | list[str] | None = None, bucket_s: float = 10.0
                ) -> pd.DataFrame:
        """Labelled buckets, as training sees them: calls and errors of the primary per
        ``bucket_s``, and whether the service was in trouble (:func:`to_segments` turns
        them into ``learning`` buckets)."""
        s, e, names = args(start, end, services)
        trouble = self._trouble(s, e, names)
        parts = [build.history(run, rate, raw, trouble, bucket_s)
                 for run, rate, raw in self._outcomes(s, e, names)]
        return build.concat(parts, "history")

    def patterns(self, start: TimeLike = None, end: TimeLike = None,
                 services: str | list[str] | None = None, now: TimeLike = None
                 ) -> pd.DataFrame:
        """Recurring failures found in the range (seed 7.1), with their recommendation,
        priority and estimated impact: learnt from the incidents (circuits opening, recovery
        runs starting) with their failures' cause, as the control API and the scheduled
        training learn them. ``next_expected`` is after ``now`` (default: ``end``, else the
        last incident)."""
        s, e, names = args(start, end, services)
        around = build.INCIDENT_AROUND_S  # an incident's cause: the failures around it
        failures = frame(self._audit(AuditKind.FAILURE_EVENT,
                                     None if s is None else s - around,
                                     None if e is None else e + around, names), "failure_event")
        opens = self.circuit_transitions(start, end, services)
        steps = self.recovery_steps(start, end, services)
        when = as_epoch(now, "now")
        return build.patterns(failures, opens, steps, e if when is None else when)

    # -- MLflow ------------------------------------------------------------------------

    def mlflow_runs(self, experiment: str = "selfheal-simulation", start: TimeLike = None,
                    end: TimeLike = None, filter_string: str = "") -> pd.DataFrame:
        """MLflow's runs of ``experiment`` that started in the range, as MLflow's own
        ``search_runs`` frame (``params.*``, ``metrics.*``, ``tags.*`` columns);
        ``selfheal-simulation`` holds simulated runs, ``selfheal-training`` the
        trainings."""
        uri = self._need_mlflow()
        s, e, _ = args(start, end, None)
        terms = [filter_string] if filter_string else []
        if s is not None:
            terms.append(f"attributes.start_time >= {int(s * 1000)}")
        if e is not None:
            terms.append(f"attributes.start_time < {int(e * 1000)}")
        return build.mlflow_runs(uri, experiment, " and ".join(terms))

    def models(self) -> pd.DataFrame:
        """Every registered version of the monitor model, newest first, with which is the
        champion and why each was promoted."""
        return build.models(self._need_mlflow())

    def _need_mlflow(self) -> str:
        if self.mlflow_uri is None:
            raise FramesError("no MLflow store given: pass mlflow_uri= (for a data "
                              "directory, sqlite:///DIR/mlflow.db)")
        return self.mlflow_uri

    def _audit_frame(self, kind: AuditKind, start: TimeLike, end: TimeLike,
                     services: str | list[str] | None) -> pd.DataFrame:
        return frame(self._audit(kind, *args(start, end, services)), kind.value)

    def close(self) -> None:  # noqa: B027 - event logs hold nothing open
        """Release connections (and an embedded Redis this object started)."""

    def __enter__(self) -> Frames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def args(start: TimeLike, end: TimeLike, services: str | list[str] | None
         ) -> tuple[float | None, float | None, list[str] | None]:
    """The loaders' arguments as epoch seconds and a list of names, checked."""
    s, e = as_epoch(start, "start"), as_epoch(end, "end")
    if s is not None and e is not None and e <= s:
        raise FramesError(f"end ({end}) must be after start ({start})")
    return s, e, service_list(services)
