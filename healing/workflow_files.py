"""Workflow files: YAML in, validated :class:`~healing.workflow.RecoveryWorkflow` out.

A mistake in a file is a :class:`WorkflowFileError` naming the file, the line and the field
(``memory_leak.yaml:14: steps[2].config: restart.config has unknown key(s) ['dealy']``), and
nothing is loaded from that file. Durations are seconds, or strings with a unit: ``500ms``,
``30s``, ``2m``, ``1h``.

The format::

    id: ai-service-failure
    trigger: circuit_open          # circuit_open | health_check_failed | error_threshold |
                                   # anomaly | memory_growth | predicted | manual
    service: clinical_reasoning
    priority: high                 # critical | high | medium | low
    timeout: 30s
    clinical_context: {operation_type: diagnostic, criticality: high}
    steps:
      - action: fallback           # retry | fallback | cache_warm | scale | restart | alert
        config: {provider: deepseek}
        success_criteria:          # optional: health_check_passes | error_rate_below |
          - probe_succeeds: {}     # probe_succeeds
        failure_action: continue   # continue | abort | rollback
        timeout: 10s
    rollback_steps: []             # run in reverse when a step's failure_action is rollback
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

from .errors import ConfigError
from .files import SourceError, YamlSource, parse_duration
from .safety import ClinicalContext
from .workflow import Criterion, RecoveryStep, RecoveryWorkflow

__all__ = ["SHIPPED", "WorkflowFileError", "load_workflow", "load_workflows", "parse_duration"]

SHIPPED = pathlib.Path(__file__).with_name("shipped") / "workflows"

_TOP = {"id", "trigger", "service", "priority", "timeout", "clinical_context", "steps",
        "rollback_steps", "description"}
_STEP = {"action", "config", "success_criteria", "failure_action", "timeout"}

WorkflowFileError = SourceError  # a workflow file is invalid; names the file, line and field


def load_workflow(path: str | pathlib.Path) -> RecoveryWorkflow:
    """Load and validate one workflow file."""
    src = YamlSource(path)
    data = src.data
    where: list[Any] = []  # the YAML path being built, for errors

    def fail(reason: str, at: list[Any]) -> SourceError:
        return src.error(reason, at, "workflow")

    if not isinstance(data, dict):
        raise fail("must be a mapping of workflow fields", [])
    unknown = set(data) - _TOP
    if unknown:
        raise fail(f"is not a workflow field (known: {sorted(_TOP)})", [sorted(unknown)[0]])
    for required in ("id", "trigger", "service", "steps"):
        if required not in data:
            raise fail("is required", [required])
    try:
        where = ["clinical_context"]
        ctx = ClinicalContext(**(data.get("clinical_context") or {}))
        groups = []
        for group in ("steps", "rollback_steps"):
            raw_steps = data.get(group) or []
            if not isinstance(raw_steps, list):
                raise fail("must be a list of steps", [group])
            built = []
            for i, raw in enumerate(raw_steps):
                where = [group, i]
                built.append(_step(raw, fail, where))
            groups.append(tuple(built))
        where = ["timeout"]
        timeout = parse_duration(data.get("timeout", 60), "timeout")
        where = []
        return RecoveryWorkflow(str(data["id"]), data["trigger"], str(data["service"]),
                                groups[0], groups[1], timeout, data.get("priority", "medium"),
                                ctx)
    except WorkflowFileError:
        raise
    except (ConfigError, TypeError) as exc:
        raise src.core_error(exc, _yaml_path(getattr(exc, "field", None), where),
                             "workflow") from None


# Where a core error's field lives in the file (core names on the left).
_STEP_FIELDS = {"action": "action", "timeout_s": "timeout", "failure_action": "failure_action"}
_WORKFLOW_FIELDS = {"timeout_s": "timeout", "trigger": "trigger", "priority": "priority",
                    "id": "id", "service": "service", "steps": "steps",
                    "rollback_steps": "rollback_steps"}


def _yaml_path(field: str | None, where: list[Any]) -> list[Any]:
    if not field:
        return where
    if where and where[0] in ("steps", "rollback_steps"):
        if field.endswith(".config"):
            return [*where, "config"]
        if ".config." in field:  # one key of the config: "scale.config.instances"
            return [*where, "config", field.rsplit(".", 1)[1]]
        if field.startswith("success_criteria"):
            return [*where, "success_criteria"]
        return [*where, _STEP_FIELDS.get(field, field)]
    if where == ["clinical_context"]:
        return [*where, field]
    m = re.fullmatch(r"steps\[(\d+)\]\.(\w+)", field)
    if m:  # a workflow-level rule about one step
        return ["steps", int(m.group(1)), _STEP_FIELDS.get(m.group(2), m.group(2))]
    return [_WORKFLOW_FIELDS.get(field, field)]


def _step(raw: Any, fail: Any, at: list[Any]) -> RecoveryStep:
    if not isinstance(raw, dict):
        raise fail("must be a mapping with an action", at)
    unknown = set(raw) - _STEP
    if unknown:
        raise fail(f"is not a step field (known: {sorted(_STEP)})", [*at, sorted(unknown)[0]])
    if "action" not in raw:
        raise fail("is required", [*at, "action"])
    criteria = []
    for j, c in enumerate(raw.get("success_criteria") or []):
        if not (isinstance(c, dict) and len(c) == 1):
            raise fail("must be a one-key mapping like {probe_succeeds: {}}",
                       [*at, "success_criteria", j])
        (kind, params), = c.items()
        criteria.append(Criterion(kind, params or {}))
    timeout = parse_duration(raw.get("timeout", 30), "timeout")
    return RecoveryStep(raw["action"], raw.get("config") or {}, tuple(criteria),
                        raw.get("failure_action", "continue"), timeout)


def load_workflows(directory: str | pathlib.Path = SHIPPED) -> list[RecoveryWorkflow]:
    """Every ``*.yaml`` workflow in ``directory``; one bad file fails the whole load."""
    flows = [load_workflow(p) for p in sorted(pathlib.Path(directory).glob("*.yaml"))]
    seen: dict[tuple[Any, str], str] = {}
    for w in flows:
        key = (w.trigger, w.service)
        if key in seen:
            raise ConfigError("trigger/service", f"{w.trigger.value}/{w.service}",
                              f"is handled by both {seen[key]!r} and {w.id!r}",
                              source=str(directory))
        seen[key] = w.id
    return flows
