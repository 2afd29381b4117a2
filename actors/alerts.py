"""Alerts to people: Slack-compatible webhooks and PagerDuty Events v2, as active alerts.

The one module that talks to alerting endpoints. An :class:`AlertRouter` maps a channel
(``slack``, ``pager``…) to an endpoint; :class:`AlertManager` sends, keeps the active alerts
by dedup key, and acknowledges and resolves them (PagerDuty ``acknowledge``/``resolve``
events with the same ``dedup_key``; a Slack message saying so). Messages carry service
names and summaries, never patient or clinician identifiers: callers pass none, and
:meth:`AlertManager.trigger` refuses fields that look like them.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from healing.clock import Clock, SystemClock
from healing.errors import ConfigError, SelfHealError

__all__ = ["AlertError", "AlertManager", "AlertRouter", "Endpoint"]

# PagerDuty's Events v2 severities; ours map onto them.
_PD_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info",
                "info": "info"}
_FORBIDDEN_DETAIL_KEYS = {"patient_id", "clinician_id", "patient", "clinician", "mrn"}


class AlertError(SelfHealError):
    """An alert could not be delivered; says where and why."""


@dataclass(frozen=True)
class Endpoint:
    """Where one channel's alerts go. ``kind`` is ``slack`` or ``pagerduty``."""

    kind: str
    url: str
    routing_key: str | None = None  # PagerDuty integration key

    def __post_init__(self) -> None:
        if self.kind not in ("slack", "pagerduty"):
            raise ConfigError("kind", self.kind, "must be slack or pagerduty")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError("url", self.url, "must be an http(s) URL")
        if self.kind == "pagerduty" and not self.routing_key:
            raise ConfigError("routing_key", self.routing_key, "is required for pagerduty")


@dataclass
class AlertRouter:
    """Channel → endpoint, with severities that may escalate to another channel too
    (``escalate={"critical": "pager"}`` pages on every critical alert, whatever its channel)."""

    channels: Mapping[str, Endpoint]
    escalate: Mapping[str, str] = field(default_factory=dict)

    def endpoints(self, channel: str, severity: str) -> list[tuple[str, Endpoint]]:
        names = [channel]
        extra = self.escalate.get(severity)
        if extra and extra not in names:
            names.append(extra)
        missing = [n for n in names if n not in self.channels]
        if missing:
            raise ConfigError("channel", missing[0],
                              f"has no endpoint (configured: {sorted(self.channels)})")
        return [(n, self.channels[n]) for n in names]


@dataclass
class ActiveAlert:
    dedup_key: str
    service: str
    severity: str
    summary: str
    channels: tuple[str, ...]
    status: str = "triggered"  # triggered | acknowledged | resolved
    triggered_at: float = 0.0
    updated_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class AlertManager:
    """Sends alerts and keeps the active ones.

    Args:
        router: channels and their endpoints.
        source: how this deployment names itself in PagerDuty (``payload.source``).
        timeout_s: per-request timeout.
    """

    def __init__(self, router: AlertRouter, source: str = "selfheal",
                 timeout_s: float = 5.0, clock: Clock | None = None,
                 on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.on_change = on_change  # told of every alert raised or updated (to persist it)
        self.router = router
        self.clock = clock or SystemClock()
        self.source = source
        self.timeout_s = timeout_s
        self._active: dict[str, ActiveAlert] = {}
        self._lock = threading.Lock()

    def trigger(self, service: str, severity: str, channel: str, summary: str,
                dedup_key: str | None = None,
                details: Mapping[str, Any] | None = None) -> ActiveAlert:
        """Raise (or re-raise) an alert; returns it. Raises AlertError if nothing got it."""
        if severity not in _PD_SEVERITY:
            raise ConfigError("severity", severity, f"must be one of {sorted(_PD_SEVERITY)}")
        details = dict(details or {})
        leaked = _FORBIDDEN_DETAIL_KEYS & {k.lower() for k in details}
        if leaked:
            raise ConfigError("details", sorted(leaked), "must not carry identifiers")
        key = dedup_key or _dedup(service, summary)
        targets = self.router.endpoints(channel, severity)
        now = self.clock.wall()
        errors = []
        for name, ep in targets:
            try:
                if ep.kind == "slack":
                    self._post(ep.url, {"text": f":rotating_light: [{severity.upper()}] "
                                                f"{service}: {summary}",
                                        "blocks": _slack_blocks(service, severity, summary,
                                                                details, key)})
                else:
                    self._post(ep.url, {
                        "routing_key": ep.routing_key, "event_action": "trigger",
                        "dedup_key": key, "client": self.source,
                        "payload": {"summary": f"{service}: {summary}"[:1024],
                                    "source": self.source, "severity": _PD_SEVERITY[severity],
                                    "component": service, "custom_details": details}})
            except AlertError as exc:
                errors.append(f"{name}: {exc}")
        if len(errors) == len(targets):
            raise AlertError("; ".join(errors))
        with self._lock:
            alert = self._active.get(key)
            if alert is None:
                alert = ActiveAlert(key, service, severity, summary,
                                    tuple(n for n, _ in targets), triggered_at=now)
                self._active[key] = alert
            else:  # raised again, perhaps higher (a ticket become a page): say what it is now
                alert.severity, alert.summary = severity, summary
                alert.channels = tuple(sorted({*alert.channels, *(n for n, _ in targets)}))
            alert.status, alert.updated_at = "triggered", now
        self._changed(alert)
        return alert

    def restore(self, alerts: list[dict[str, Any]]) -> None:
        """Take back alerts saved through ``on_change`` (after a restart)."""
        with self._lock:
            for saved in sorted(alerts, key=lambda a: (a["triggered_at"], a["dedup_key"])):
                self._active[saved["dedup_key"]] = ActiveAlert(
                    **{**saved, "channels": tuple(saved["channels"])})

    def _changed(self, alert: ActiveAlert) -> None:
        if self.on_change is not None:
            self.on_change(alert.as_dict())

    def acknowledge(self, dedup_key: str) -> ActiveAlert:
        return self._update(dedup_key, "acknowledge", "acknowledged")

    def resolve(self, dedup_key: str) -> ActiveAlert:
        return self._update(dedup_key, "resolve", "resolved")

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.as_dict() for a in self._active.values() if a.status != "resolved"]

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.as_dict() for a in self._active.values()]

    def _update(self, key: str, action: str, status: str) -> ActiveAlert:
        with self._lock:
            alert = self._active.get(key)
        if alert is None:
            raise ConfigError("dedup_key", key, "is not an active alert")
        for name in alert.channels:
            ep = self.router.channels[name]
            if ep.kind == "pagerduty":
                self._post(ep.url, {"routing_key": ep.routing_key, "event_action": action,
                                    "dedup_key": key})
            else:
                self._post(ep.url, {"text": f":white_check_mark: {alert.service}: "
                                            f"{alert.summary} — {status}"})
        with self._lock:
            alert.status, alert.updated_at = status, self.clock.wall()
        self._changed(alert)
        return alert

    def _post(self, url: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                if resp.status >= 300:
                    raise AlertError(f"{url} answered HTTP {resp.status}")
        except urllib.error.HTTPError as exc:
            raise AlertError(f"{url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise AlertError(f"{url} unreachable: {getattr(exc, 'reason', exc)}") from None


def _dedup(service: str, summary: str) -> str:
    return "selfheal-" + hashlib.sha256(f"{service}|{summary}".encode()).hexdigest()[:16]


def _slack_blocks(service: str, severity: str, summary: str, details: Mapping[str, Any],
                  key: str) -> list[dict[str, Any]]:
    fields = [{"type": "mrkdwn", "text": f"*Service*\n{service}"},
              {"type": "mrkdwn", "text": f"*Severity*\n{severity}"}]
    fields += [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(details.items())[:8]]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{summary}*"}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"dedup `{key}`"}]}]
