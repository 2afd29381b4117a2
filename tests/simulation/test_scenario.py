"""Scenario files: a good one loads; a mistake names the file, the line and the field."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from healing.files import SourceError
from simulation.scenario import SCENARIOS, FaultKind, load_scenario

GOOD = """\
name: small
duration: 1h
seed: 3
start: "2026-01-05T08:00:00"
services:
  api:
    rps: 5
    latency_ms: {p50: 50, p99: 400}
    error_rate: 0.01
    providers: [main, backup]
    operation: diagnostic
    criticality: high
  db:
    rps: 2
    providers: [primary]
faults:
  - service: api
    target: main
    kind: outage
    at: 10m
    for: 5m
    every: 20m
"""


def write(tmp_path, text):
    p = tmp_path / "scenario.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_a_good_file_loads_with_units_defaults_and_recurrence(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.name == "small" and sc.duration_s == 3600 and sc.seed == 3
    assert sc.start.hour == 8 and sc.start.tzinfo is not None
    api = sc.services["api"]
    assert api.primary == "main" and api.latency_p99_s == 0.4
    assert api.timeout_s == pytest.approx(1.2)
    assert sc.services["db"].operation.value == "informational"
    [f] = sc.faults
    assert f.kind is FaultKind.OUTAGE and f.params == {"error_rate": 1.0}
    assert f.windows(sc.duration_s) == [(600, 900), (1800, 2100), (3000, 3300)]


def test_a_mix_of_requests_takes_its_shares_of_the_rate(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD.replace("    criticality: high", (
        "    criticality: high\n    mix:\n      - {share: 0.25, criticality: life_critical}\n"
        "      - {share: 0.1, operation: informational, criticality: low}"))))
    kinds = [(share, op.value, crit.value) for share, op, crit in sc.services["api"].requests]
    assert kinds == [(pytest.approx(0.65), "diagnostic", "high"),
                     (0.25, "diagnostic", "life_critical"), (0.1, "informational", "low")]
    assert [k[0] for k in sc.services["db"].requests] == [1.0]  # no mix: one kind


def test_every_shipped_scenario_loads():
    shipped = sorted(SCENARIOS.glob("*.yaml"))
    assert len(shipped) >= 9
    names = {load_scenario(p).name for p in shipped}
    assert {"ai-provider-outage", "database-connection-lost", "api-memory-leak",
            "daily-deadlock-week", "drug-interaction-outage", "noisy-but-healthy-day",
            "cascading-database-failure", "flapping-provider", "fallback-tiers"} <= names


@pytest.mark.parametrize("edit,line,field,words", [
    (lambda t: t.replace("name: small\n", ""), None, "name", "is required"),
    (lambda t: t.replace("duration: 1h", "duration: forever"), 2, "duration", "duration like"),
    (lambda t: t.replace("seed: 3", "seed: -1"), 3, "seed", "whole number"),
    (lambda t: t.replace('"2026-01-05T08:00:00"', "monday"), 4, "start", "ISO date-time"),
    (lambda t: t.replace("rps: 5", "rps: 0"), 7, "services.api.rps", "> 0"),
    (lambda t: t.replace("p99: 400", "p99: 10"), 8, "services.api.latency_ms.p99",
     "at least p50"),
    (lambda t: t.replace("error_rate: 0.01", "error_rate: 2"), 9, "services.api.error_rate",
     "between 0 and 1"),
    (lambda t: t.replace("providers: [main, backup]", "providers: []"), 10,
     "services.api.providers", "at least one"),
    (lambda t: t.replace("operation: diagnostic", "operation: surgical"), 11,
     "services.api.operation", "must be one of"),
    (lambda t: t.replace("    rps: 2\n", "    rps: 2\n    colour: red\n"), 15,
     "services.db.colour", "not a service field"),
    (lambda t: t.replace("providers: [primary]", "providers: [primary]\n    depends_on: [api]")
     .replace("    criticality: high", "    criticality: high\n    depends_on: [db]"), None,
     "services", "dependency cycle"),
    (lambda t: t.replace("target: main", "target: nobody"), 18, "faults[0].target",
     "must be one of api's providers"),
    (lambda t: t.replace("kind: outage", "kind: meteor"), 19, "faults[0].kind",
     "must be one of"),
    (lambda t: t.replace("at: 10m", "at: 2h"), 20, "faults[0].at", "within the run"),
    (lambda t: t.replace("every: 20m", "every: 1m"), 22, "faults[0].every",
     "longer than the fault"),
    (lambda t: t + "    params: {latency_factor: 3}\n", 23, "faults[0].params.latency_factor",
     "not a parameter of outage"),
    (lambda t: t + "    params: {error_rate: 1.5}\n", 23, "faults[0].params.error_rate",
     "between 0 and 1"),
    (lambda t: t + "    cleared_by: prayer\n", 23, "faults[0].cleared_by", "must be one of"),
    (lambda t: t.replace("service: api\n    target", "service: nope\n    target"), 17,
     "faults[0].service", "must be one of the scenario's services"),
    (lambda t: t + "policy: aggressive\n", 23, "policy", "must be 'default'"),
    (lambda t: t.replace("    criticality: high", "    criticality: high\n    mix: life"), 13,
     "services.api.mix", "must be a list"),
    (lambda t: t.replace("    criticality: high", "    criticality: high\n    mix:\n"
                         "      - {share: 1.5}"), 14, "services.api.mix[0].share",
     "between 0 and 1"),
    (lambda t: t.replace("    criticality: high", "    criticality: high\n    mix:\n"
                         "      - {share: 0.2, criticality: extreme}"), 14,
     "services.api.mix[0].criticality", "must be one of"),
    (lambda t: t.replace("    criticality: high", "    criticality: high\n    mix:\n"
                         "      - {share: 0.2, colour: red}"), 14, "services.api.mix[0].colour",
     "not a request kind field"),
    (lambda t: t.replace("    criticality: high", "    criticality: high\n    mix:\n"
                         "      - {share: 0.6}\n      - {share: 0.5}"), None,
     "services.api.mix", "leave a share"),
])
def test_a_mistake_names_the_file_line_and_field(tmp_path, edit, line, field, words):
    p = write(tmp_path, edit(GOOD))
    with pytest.raises(SourceError) as err:
        load_scenario(p)
    e = err.value
    assert e.field.startswith(field) and words in str(e) and str(p) in str(e), str(e)
    if line is not None:
        assert e.line == line, str(e)


def test_broken_yaml_and_missing_files_are_named(tmp_path):
    with pytest.raises(SourceError, match=r"scenario.yaml:\d+: yaml: is not valid YAML"):
        load_scenario(write(tmp_path, "name: x\nservices: [unclosed\n"))
    with pytest.raises(SourceError, match="cannot be read"):
        load_scenario(tmp_path / "absent.yaml")


def test_a_file_that_is_not_utf8_text_or_nests_too_deeply_is_named(tmp_path):
    """A binary file, or one saved in another encoding, is named with the line of its first
    bad byte (it was a decoder's traceback); a file nested past the parser's recursion is
    named too. An editor's byte-order mark is no mistake."""
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(GOOD.encode() + "# Ärzte\n".encode("latin-1"))
    with pytest.raises(SourceError) as err:
        load_scenario(latin)
    line = GOOD.count("\n") + 1
    assert str(err.value) == (f"{latin}:{line}: file: is not UTF-8 text (byte 0xc4; save it "
                              "as UTF-8)")
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(SourceError, match=r"deep\.yaml: yaml: nests too deeply"):
        load_scenario(deep)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("\ufeff".encode() + GOOD.encode())
    plain = load_scenario(write(tmp_path, GOOD))
    assert load_scenario(bom) == dataclasses.replace(plain, source=str(bom))
