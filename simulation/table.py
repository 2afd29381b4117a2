"""The readable form of the reports: one table per scenario, self-healing beside baseline."""

from __future__ import annotations

from typing import Any

__all__ = ["format_reports"]

_ROWS = (
    ("availability", "availability", "pct"),
    ("MTTD", "mttd_s", "s"),
    ("MTTR", "mttr_s", "s"),
    ("automated recovery", "recovery_success_rate", "pct"),
    ("false positives (minutes)", "false_positive_rate", "pct2"),
    ("false negatives (incidents)", "false_negative_rate", "pct"),
    ("integrity violations", "integrity_violations", "int"),
    ("audit completeness", "audit_completeness", "pct"),
)


def _fmt(v: Any, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "pct":
        return f"{100 * v:.1f} %"
    if kind == "pct2":
        return f"{100 * v:.2f} %"
    if kind == "s":
        return f"{v:.1f} s"
    return f"{v:g}"


def _spread(report: dict[str, Any], key: str, kind: str) -> str:
    s = report.get("spread", {}).get(key)
    if not s:
        return ""
    lo, hi = _fmt(s["min"], kind), _fmt(s["max"], kind)
    return "" if lo == hi else f" ({lo}..{hi})"


def format_reports(reports: list[dict[str, Any]]) -> str:
    lines = []
    for r in reports:
        hours = r["simulated_seconds"] / 3600
        runs = f", {r['runs']} runs (seeds {r['seed']}..{r['seed'] + r['runs'] - 1}, mean " \
               f"and range)" if r["runs"] > 1 else f", seed {r['seed']}"
        n_inc = sum(1 for i in r["incidents"] if i["run"] == 0)
        lines.append(f"{r['scenario']}: {hours:g} h simulated, {r['requests']:,.0f} requests, "
                     f"{n_inc} incident(s){runs}")
        lines.append(f"  {'':30s}{'self-healing':>28s}{'baseline':>14s}")
        for label, key, kind in _ROWS:
            ours = _fmt(r[key], kind) + _spread(r, key, kind)
            lines.append(f"  {label:30s}{ours:>28s}{_fmt(r['baseline'][key], kind):>14s}")
        if r.get("prevented_faults"):
            lines.append(f"  {'faults prevented (mean per run)':30s}"
                         f"{r['prevented_faults']:>28g}{0:>14d}")
        impact = r["patient_impact"]
        total = sum(impact.values()) or 1
        lines.append("  patient impact (self-healing): " + ", ".join(
            f"{k} {100 * v / total:.2f} %" for k, v in impact.items()))
        lines.append("")
    return "\n".join(lines)
