"""The chaos report: totals, the table ``make chaos`` prints, and the same table in Markdown
(``make chaos`` writes it into docs/chaos.md, which the README links).

Each live MTTD and MTTR is judged against the simulator's prediction (the issue's aim: within
1.5x). A difference of at most one check of the error-threshold watch (5 s) is within too:
against figures that small the ratio says less than the difference (a live 1.2 s beside a
predicted 5 s is the watch's beat, not a modelling error). Beyond that, the report gives the
known reason for the fault's kind (``prediction.DIFFERENCES``) or says it is unexplained."""

from __future__ import annotations

from typing import Any

__all__ = ["agreement", "headline", "markdown", "summary", "table"]

RATIO = 1.5  # the aim: a live figure within 1.5x of the prediction


def agreement(live: float | None, predicted: float | None, beat_s: float) -> str:
    """``within`` (1.5x either way, or one beat of the watch apart), or ``beyond``."""
    if live is None or predicted is None:
        return "within" if live is None and predicted is None else "beyond"
    if abs(live - predicted) <= beat_s:
        return "within"
    lo, hi = sorted((live, predicted))
    return "within" if hi <= RATIO * lo else "beyond"


def _judged(e: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any] | None, str, str]]:
    """Each timed fault of ``e`` with its prediction, the comparison's kind (a key of
    ``summary``'s ``predictions``, or "" when not modelled) and what the report says of it:
    ``within 1.5x``, or ``beyond 1.5x`` with the known reason, or ``beyond 1.5x,
    unexplained``."""
    prediction = e.get("prediction") or {}
    out = []
    for t in e.get("timings") or []:
        p = _replayed(t, prediction.get("incidents", []))
        if p is None:
            out.append((t, None, "", "not modelled"))
            continue
        beat = prediction.get("beat_s", 5.0)
        if all(agreement(t[k], p[k], beat) == "within" for k in ("mttd_s", "mttr_s")):
            out.append((t, p, "within", "within 1.5x"))
            continue
        why = prediction.get("differences", {}).get(t["fault"])
        out.append((t, p, "beyond_explained", f"beyond 1.5x: {why}") if why
                   else (t, p, "beyond_unexplained", "beyond 1.5x, unexplained"))
    return out


def _replayed(timing: dict[str, Any], incidents: list[dict[str, Any]]
              ) -> dict[str, Any] | None:
    """The replay's incident of a timed fault: its service's, starting nearest it (a
    service can have two faults in one experiment). A report written before incidents had a
    start has one incident per service."""
    mine = [i for i in incidents if i["service"] == timing["service"]]
    start = timing.get("start_s", 0.0)
    return min(mine, key=lambda i: abs(i.get("start_s", start) - start), default=None)


def summary(experiments: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the experiments: what the suite's verdict rests on."""
    ran = [e for e in experiments if "skipped" not in e]
    return {
        "experiments": len(experiments), "ran": len(ran),
        "passed": sum(bool(e.get("passed")) for e in ran),
        "requests_sent": sum(e["load"]["sent"] for e in ran),
        "requests_answered": sum(e["load"]["answered"] for e in ran),
        "faults_injected": sum(len(e["faults"]) for e in ran),
        "lost": sum(e["lost"] for e in ran),
        "safety_violations": sum(e["safety_violations"] for e in ran),
        "audit_records_reconciled": sum(e["audit"]["found"] + e["steps"]["expected"]
                                        - e["steps"]["lost"] for e in ran),
        "predictions": {key: sum(kind == key for e in ran for _, _, kind, _ in _judged(e))
                        for key in ("within", "beyond_explained", "beyond_unexplained")},
    }


def _predictions(s: dict[str, Any]) -> str:
    p = s["predictions"]
    return (f"live within 1.5x of the simulator's prediction: {p['within']} of "
            f"{sum(p.values())} timed faults, beyond it for a known reason: "
            f"{p['beyond_explained']}, unexplained: {p['beyond_unexplained']}")


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 1 else f"{v:.3f}"
    return str(v)


def _rows(e: dict[str, Any]) -> list[list[str]]:
    if "skipped" in e:
        return [[e["name"], "skipped: " + e["skipped"], *[""] * (len(HEADER) - 2)]]
    load = e["load"]
    tiers = ", ".join(f"{k} {v}" for k, v in load["by_tier"].items())
    explicit = load["by_outcome"].get("explicit", 0)
    base = [e["name"], "pass" if e["passed"] else "FAIL",
            f"{load['sent']} sent, {load['answered']} answered ({tiers}), "
            f"{explicit} failed explicitly with guidance",
            _fmt(e["lost"]), _fmt(e["safety_violations"]), _blast(e.get("groups"))]
    rows = []
    for t, p, _, verdict in _judged(e) or [(None, None, "", "")]:
        if t is None:
            rows.append([*base, "", "", "not modelled (a fault on selfheal itself)", ""])
            continue
        sim = (f"{_fmt(p['mttd_s'])} / {_fmt(p['mttr_s'])}" if p else "not modelled")
        if p and (e.get("prediction") or {}).get("modelled"):
            sim += " (Redis stopped: without the error-threshold watch)"
        rows.append([*base, t["fault"], f"{_fmt(t['mttd_s'])} / {_fmt(t['mttr_s'])}", sim,
                     verdict])
        base = [""] * len(base)
    return rows


def _blast(groups: dict[str, Any] | None) -> str:
    """The control group (the services no fault aimed at) while the faults were on, beside
    itself before them: its p99 wait and the share it answered."""
    if not groups or "p99_s" not in groups["control"] or "p99_s" not in groups[
            "control_before"]:
        return "—"
    during, before = groups["control"], groups["control_before"]
    return (f"{_fmt(during['p99_s'])} s / {_fmt(before['p99_s'])} s; answered "
            f"{during['answered']:.1%} / {before['answered']:.1%}")


HEADER = ["experiment", "verdict", "load", "lost", "safety violations",
          "others' p99 wait and answered, during / before", "fault timed",
          "live MTTD / MTTR (s)", "simulator MTTD / MTTR (s)", "live against predicted"]


def table(report: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    rows = [HEADER] + [r for e in report["experiments"] for r in _rows(e)]
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(HEADER))]
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(c[:60].ljust(w) for c, w in zip(r, widths, strict=True)))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    s = report["summary"]
    out.append("")
    out.append(f"{s['passed']} of {s['experiments']} experiments passed; {s['requests_sent']} "
               f"requests sent, {s['requests_answered']} answered; {s['faults_injected']} "
               f"faults; lost {s['lost']}; safety violations {s['safety_violations']}")
    out.append(_predictions(s))
    return "\n".join(out)


def markdown(report: dict[str, Any]) -> str:
    """The same table in Markdown, with the run's facts above it."""
    s = report["summary"]
    lines = [f"Run of {report['started']} ({report['mode']} suite, {report['machine']}): "
             f"{report['rate']['note']}", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for e in report["experiments"]:
        for r in _rows(e):
            lines.append("| " + " | ".join(c.replace("|", "/") for c in r) + " |")
    lines += ["", f"**{s['passed']} of {s['experiments']} experiments passed; "
                  f"{s['requests_sent']} requests sent, {s['requests_answered']} answered; "
                  f"{s['faults_injected']} faults; lost {s['lost']}; safety violations "
                  f"{s['safety_violations']}; {s['audit_records_reconciled']} audit records "
                  "reconciled.**", "", _predictions(s) + "."]
    return "\n".join(lines)


def headline(report: dict[str, Any]) -> str:
    """One sentence of the run's verdict, for the README."""
    s = report["summary"]
    multi = report["rate"].get("multi_node") or {}
    rates = f"{report['rate']['per_s']:g} requests/s" + (
        f" on one node, {multi['per_s']:g} on {multi['nodes']}" if multi.get("per_s") else "")
    return (f"Latest `make chaos` ({report['started']}, {report['mode']} suite at "
            f"{rates}): {s['passed']} of {s['experiments']} "
            f"experiments passed; {s['requests_sent']:,} requests sent, "
            f"{s['requests_answered']:,} "
            f"answered; {s['faults_injected']} faults; lost {s['lost']}; safety violations "
            f"{s['safety_violations']}; {s['audit_records_reconciled']:,} audit records "
            f"reconciled; {_predictions(s)}.")
