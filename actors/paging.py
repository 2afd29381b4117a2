"""Who is woken, live: the orchestrator's two-key pager (``healing.slo``).

The predictive monitor keeps every service's error budget from the metric streams and sends
the orchestrator its burn-rate alerts each step (:meth:`LivePager.burning`); every trigger
that reaches the orchestrator other than an operator's own is the detection key
(:meth:`LivePager.detected`). When :class:`~healing.slo.Pager` opens an incident or raises
it to a page, the notice goes out through the alert channels: a page to ``pager`` (PagerDuty)
as critical, a ticket to ``slack``, one alert per service (dedup key ``slo-{service}``), sent
from a thread of its own so that no trigger waits on a webhook.

Workflow alert steps obey the same rule (:meth:`LivePager.gate`): an alert meant to page (the
``pager`` channel, or critical, which escalates to it) goes out as a ticket on ``slack``
unless the pager has paged for that service's incident. An operator's manual trigger is not
gated: whoever asked is awake.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from healing.clock import Clock
from healing.recovery import SendAlert
from healing.slo import BurnAlert, Notice, Pager

from .alerts import AlertError, AlertManager

__all__ = ["BURN_FRESH_S", "LivePager"]

_log = logging.getLogger("selfheal.paging")
# burn-rate alerts older than this are no longer in force (the monitor resends every step)
BURN_FRESH_S = 30.0


class LivePager:
    def __init__(self, mode: str, alerts: AlertManager | None, clock: Clock,
                 record: Any = None) -> None:
        self.pager = Pager(mode)
        self.alerts, self.clock = alerts, clock
        self.record = record  # told of every notice (to keep it in the actor's state)
        self._burning: dict[str, tuple[list[BurnAlert], float]] = {}
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pager")

    def detected(self, service: str) -> Notice | None:
        self.pager.detected(service, self.clock.wall())
        return self._decide(service)

    def burning(self, service: str, alerts: list[BurnAlert]) -> Notice | None:
        self._burning[service] = (list(alerts), self.clock.wall())
        return self._decide(service)

    def _decide(self, service: str) -> Notice | None:
        now = self.clock.wall()
        alerts, at = self._burning.get(service, ([], float("-inf")))
        notice = self.pager.decide(service, alerts if now - at <= BURN_FRESH_S else [], now)
        if notice is None:
            return None
        if self.record is not None:
            self.record(dataclasses.asdict(notice))
        if self.alerts is not None:
            # off the caller's event loop (a trigger must not wait on Slack), one at a time
            # so that a ticket and the page it becomes arrive in that order
            try:
                asyncio.get_running_loop().run_in_executor(self._sender, self._send, notice)
            except RuntimeError:  # no loop: a plain object in a test
                self._send(notice)
        return notice

    def _send(self, notice: Notice) -> None:
        assert self.alerts is not None
        page = notice.level == "page"
        try:
            self.alerts.trigger(notice.service, "critical" if page else "medium",
                                "pager" if page else "slack",
                                f"{notice.level}: {notice.why}"[:500],
                                dedup_key=f"slo-{notice.service}",
                                details={"level": notice.level})
        except AlertError:  # the notice is kept; the channel's failure is logged
            _log.warning("%s for %s not delivered", notice.level, notice.service,
                         exc_info=True)

    def gate(self, effect: SendAlert) -> SendAlert:
        """``effect`` as it may go out: a page only for an incident the pager paged."""
        if (effect.channel != "pager" and effect.severity != "critical") or \
                self.pager.paged(effect.service):
            return effect
        return dataclasses.replace(
            effect, channel="slack", severity="high" if effect.severity == "critical"
            else effect.severity,
            summary=f"{effect.summary} (ticket: no error budget burning yet, so no page)")
