"""Everything selfheal records, as pandas DataFrames: the analysts' one interface.

Two kinds of source give the same frames, with the same columns and types:

* :class:`LiveFrames` reads a running service's stores (or those a stopped one left in its
  data directory): the Redis metric streams, the SQL audit trail, the orchestrator's state in
  Redis, and MLflow;
* :class:`EventLogFrames` reads simulation event logs (``selfheal simulate --events DIR``:
  one folder of Parquet files per run), and MLflow when given its URI.

:func:`open_frames` picks one from what it is given. Every loader takes ``start`` and
``end`` (UTC: epoch seconds, ISO text, ``datetime`` or ``pandas.Timestamp``; a time without a
zone is UTC) and ``services`` (a name or a list; None: all), and reads only that: a time
range of each Redis stream, a ``WHERE`` on the SQL tables, Parquet filters. Times come back
as ``datetime64[ns, UTC]``. Every frame has a ``run`` column: the event log's folder name,
or ``"live"``. Patients, clinicians and operators appear only as the pseudonyms the stores
keep. The columns are listed in docs/data.md; the derived frames (``metrics``, ``history``,
``patterns``) are built in :mod:`actors.frames_build`, the same way for both sources.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy import select

from healing.audit import AuditKind, AuditRecord
from healing.clock import Clock, SystemClock
from healing.errors import SelfHealError

from . import frames_build as build
from .frames_base import Frames, FramesError
from .frames_build import COLUMNS
from .live_history import read_transitions, stream_services, trouble_spans
from .settings import Settings
from .stores.actor_state import ActorState
from .stores.audit_sql import PROJECTIONS, AuditStore
from .stores.embedded_redis import EmbeddedRedis
from .stores.metric_stream import first_id, read_events
from .stores.redis_conn import connect

__all__ = ["COLUMNS", "EventLogFrames", "Frames", "FramesError", "LiveFrames", "open_frames",
           "to_segments"]

to_segments = build.to_segments

# A stream entry's id is at or after each of its events, and at most ENTRY_SPAN_S after
# (actors.stores.metric_stream), so a range is read from ``start``'s id. Past ``end``, a
# writer's entry can carry earlier events when another writer's newer entry came first (its
# id is then just after that one): read this much further; an entry that lagged longer than
# that (clocks apart by more, say) is not seen.
FLUSH_SLACK_S = 300.0
# how far before ``start`` circuit transitions are read, to know what was already open
TROUBLE_LOOKBACK_S = 86400.0


class LiveFrames(Frames):
    """A running service's stores, or those a stopped one left (``Settings.embedded(DIR)``:
    its private Redis is started on the append-only file it left, and stopped again by
    :meth:`close`). Reads never write: the SQLite audit database is opened read-only.

    Args:
        settings: where the stores are (``actors.settings.load_settings()``).
        orchestrator: the orchestrator actor's name (its persisted runs and detections).
        clock: what "now" is (a circuit still open is in trouble until now).
    """

    def __init__(self, settings: Settings, orchestrator: str = "orchestrator",
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._server: EmbeddedRedis | None = None
        url = settings.redis_url
        if url is None:  # an embedded setup: its private Redis, running or left on disk
            server = EmbeddedRedis(settings.data_dir / "redis")
            was_running = server.running()
            try:
                server.start()
            except SelfHealError as exc:
                raise FramesError(f"{settings.data_dir / 'redis'}: {exc}") from None
            url = server.url
            if not was_running:  # ours to stop; another process's is left running
                self._server = server
        self.redis = connect(url, timeout_s=10.0)  # a day of a stream is a large reply
        try:
            self.store = AuditStore(settings.audit_database_url(), read_only=True)
        except SelfHealError as exc:
            self.close()
            raise FramesError(str(exc)) from None
        self.state = ActorState(self.redis, f"selfheal:{orchestrator}")
        self.sample_rate = settings.metrics_sample_rate
        self.mlflow_uri = settings.mlflow_tracking_uri or (
            f"sqlite:///{settings.data_dir / 'mlflow.db'}"
            if (settings.data_dir / "mlflow.db").exists() else None)

    def _outcomes(self, start: float | None, end: float | None,
                  services: list[str] | None) -> Iterator[tuple[str, float, pd.DataFrame]]:
        names = services if services is not None else stream_services(self.redis)
        lo = "-" if start is None else first_id(start)
        hi = "+" if end is None else str(int((end + FLUSH_SLACK_S) * 1000))
        rows = [[at, service, latency, bool(ok), kind, tier, provider]
                for service in names
                for at, latency, ok, kind, tier, provider in read_events(
                    self.redis, service, first=lo, last=hi)
                if build.within(at, start, end)]
        yield "live", self.sample_rate, pd.DataFrame(rows, columns=build.RAW_OUTCOMES)

    def _audit(self, kind: AuditKind, start: float | None, end: float | None,
               services: list[str] | None) -> pd.DataFrame:
        table = PROJECTIONS[kind][0]
        q = select(table)
        if start is not None:
            q = q.where(table.c.at >= start)
        if end is not None:
            q = q.where(table.c.at < end)
        if services is not None:
            q = q.where(table.c.service.in_(services))
        with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q.order_by(table.c.at))]
        return build.audit_rows("live", rows, kind)

    def _runs(self, start: float | None, end: float | None,
              services: list[str] | None) -> pd.DataFrame:
        rows = [r for r in self.state.table("runs").values()
                if build.within(r["started_at"], start, end)
                and (services is None or r["service"] in services)]
        return build.runs_rows("live", rows)

    def _detections(self, start: float | None, end: float | None,
                    services: list[str] | None) -> pd.DataFrame:
        # the orchestrator keeps the newest thousand (GET /api/v1/detections reads the same)
        rows = [{"run": "live", **d} for d in self.state.items("detections")
                if build.within(d["at"], start, end)
                and (services is None or d["service"] in services)]
        return build.detection_rows(rows)

    def _trouble(self, start: float | None, end: float | None,
                 services: list[str] | None) -> pd.DataFrame:
        since = None if start is None else start - TROUBLE_LOOKBACK_S
        found = read_transitions(self.store, since, end)
        spans = trouble_spans(found, end if end is not None else self.clock.wall())
        return build.trouble_rows("live", spans, start, end, services)

    def close(self) -> None:
        if getattr(self, "store", None) is not None:
            self.store.dispose()
        if getattr(self, "redis", None) is not None:
            self.redis.close()
        if self._server is not None:
            self._server.stop()
            self._server = None


class EventLogFrames(Frames):
    """Simulation event logs: a run's folder, or a folder of them (one level down).

    Args:
        path: the folder ``selfheal simulate --events`` was given, or one run's folder.
        mlflow_uri: the MLflow store the simulations were logged to, if any.
    """

    def __init__(self, path: str | pathlib.Path, mlflow_uri: str | None = None) -> None:
        root = pathlib.Path(path)
        if not root.is_dir():
            raise FramesError(f"{root}: no such folder")
        dirs = [root] if (root / "outcomes.parquet").exists() else sorted(
            d for d in root.iterdir() if (d / "outcomes.parquet").exists())
        if not dirs:
            raise FramesError(f"{root}: no event log here (a run's folder holds "
                              "outcomes.parquet; selfheal simulate --events DIR writes them)")
        self.runs: dict[str, dict[str, Any]] = {}
        self._dirs: dict[str, pathlib.Path] = {}
        for d in dirs:
            meta = d / "run.json"
            try:
                self.runs[d.name] = json.loads(meta.read_text())
            except FileNotFoundError:
                raise FramesError(f"{meta}: missing (an event log from before run.json was "
                                  "written: simulate it again)") from None
            except json.JSONDecodeError as exc:
                raise FramesError(f"{meta}: not JSON ({exc})") from None
            self._dirs[d.name] = d
        self.mlflow_uri = mlflow_uri

    def _read(self, run: str, name: str, start: float | None, end: float | None,
              services: list[str] | None, at: str = "at") -> pd.DataFrame:
        filters: list[tuple[str, str, Any]] = []
        if start is not None:
            filters.append((at, ">=", start))
        if end is not None:
            filters.append((at, "<", end))
        if services is not None:
            filters.append(("service", "in", services))
        path = self._dirs[run] / name
        try:
            table = pq.read_table(path, filters=filters or None)
        except (OSError, ValueError) as exc:
            raise FramesError(f"{path}: cannot read ({exc})") from None
        return table.to_pandas()

    def _outcomes(self, start: float | None, end: float | None,
                  services: list[str] | None) -> Iterator[tuple[str, float, pd.DataFrame]]:
        for run, meta in self.runs.items():
            raw = self._read(run, "outcomes.parquet", start, end, services)
            yield run, float(meta["sample_rate"]), raw[build.RAW_OUTCOMES]

    def _audit(self, kind: AuditKind, start: float | None, end: float | None,
               services: list[str] | None) -> pd.DataFrame:
        parts = []
        for run in self.runs:
            raw = self._read(run, "audit.parquet", start, end, services)
            raw = raw[raw["kind"] == kind.value]
            project = PROJECTIONS[kind][1]
            rows = [project(AuditRecord(r.id, kind, r.at, r.service, json.loads(r.data),
                                        "", 0, "", "")) for r in raw.itertuples()]
            parts.append(build.audit_rows(run, rows, kind))
        return build.concat(parts, kind.value)

    def _runs(self, start: float | None, end: float | None,
              services: list[str] | None) -> pd.DataFrame:
        parts = [build.runs_rows(run, self._read(run, "runs.parquet", start, end, services,
                                                 at="started_at").to_dict("records"))
                 for run in self.runs]
        return build.concat(parts, "workflow_runs")

    def _detections(self, start: float | None, end: float | None,
                    services: list[str] | None) -> pd.DataFrame:
        rows = []
        for run, meta in self.runs.items():
            zero = float(meta["start"])  # detections are kept in simulated seconds
            raw = self._read(run, "detections.parquet",
                             None if start is None else start - zero,
                             None if end is None else end - zero, services)
            rows += [{"run": run, "at": zero + r.at, "service": r.service,
                      "trigger": r.signal, "detail": r.detail, "admitted": None}
                     for r in raw.itertuples()]
        return build.detection_rows(rows)

    def _trouble(self, start: float | None, end: float | None,
                 services: list[str] | None) -> pd.DataFrame:
        parts = []
        for run in self.runs:
            raw = self._read(run, "trouble.parquet", None, None, services)
            spans: dict[str, list[tuple[float, float]]] = {}
            for r in raw.itertuples():
                spans.setdefault(r.service, []).append((r.start, r.end))
            parts.append(build.trouble_rows(run, spans, start, end, services))
        return build.concat(parts, "trouble")


def open_frames(source: Settings | str | pathlib.Path | None = None,
                mlflow_uri: str | None = None) -> Frames:
    """The frames of ``source``: settings (a running service); a folder of event logs, or
    a data directory holding ``events/`` (event logs) or ``audit.db`` (a stopped embedded
    service); None: the settings of this environment (``selfheal.toml``, ``SELFHEAL_*``)."""
    if source is None:
        from .settings import load_settings  # noqa: PLC0415

        return LiveFrames(load_settings())
    if isinstance(source, Settings):
        return LiveFrames(source)
    root = pathlib.Path(source)
    mlflow = mlflow_uri or (f"sqlite:///{root / 'mlflow.db'}"
                            if (root / "mlflow.db").exists() else None)
    if (root / "events").is_dir():
        return EventLogFrames(root / "events", mlflow)
    if (root / "audit.db").exists():
        return LiveFrames(Settings.embedded(root))
    return EventLogFrames(root, mlflow)
