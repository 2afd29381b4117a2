"""The control API as an operator meets it: `selfheal up`'s stack (real Ray, Ray Serve over
HTTP, PostgreSQL, Redis), driven with HTTP requests and bearer tokens."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from healing.audit import AuditKind

REDIS_URL = "redis://127.0.0.1:6379/0"


def _get(state, path, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(state["url"] + path, headers=headers, timeout=30, **kw)


def _post(state, path, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(state["url"] + path, headers=headers, json=body or {}, timeout=30)


def _operator_actions(settings):
    from sqlalchemy import select

    from actors.stores.audit_sql import AuditStore, audit_log

    store = AuditStore(settings.audit_database_url())
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(select(audit_log.c.data).where(
                audit_log.c.kind == AuditKind.OPERATOR_ACTION.value))
            return [r.data for r in rows]
    finally:
        store.dispose()


def _actions_when(settings, ready, timeout_s=30.0):
    """The operator actions in the database once ``ready(actions)`` holds: the API replica's
    audit trail flushes its spool to the database in the background."""
    deadline = time.monotonic() + timeout_s
    while True:
        actions = _operator_actions(settings)
        if ready(actions) or time.monotonic() > deadline:
            return actions


def test_no_token_or_a_bad_one_is_401_and_a_role_that_may_not_is_403(stack):
    state, settings, tokens = stack
    assert _get(state, "/api/v1/livez").json() == {"ok": True}
    assert _get(state, "/api/v1/health").status_code == 401
    assert _get(state, "/api/v1/health", "shk_000000000000_" + "A" * 43).status_code == 401
    assert _get(state, "/api/v1/health", tokens["viewer"] + "x").status_code == 401
    assert _get(state, "/api/v1/health", tokens["viewer"]).status_code == 200
    assert _get(state, "/api/v1/audit", tokens["operator"]).status_code == 403
    assert _get(state, "/api/v1/tokens", tokens["auditor"]).status_code == 403
    refused = _post(state, "/api/v1/recovery/trigger", tokens["viewer"],
                    {"service": "clinical_reasoning", "reason": "not mine to do"})
    assert refused.status_code == 403 and "may not operate" in refused.json()["detail"]
    # an allowed change after it: once that is in the trail, the refused one would be too
    assert _post(state, "/api/v1/recovery/trigger", tokens["operator"],
                 {"service": "clinical_reasoning", "reason": "marker"}).status_code == 200
    actions = _actions_when(settings, lambda a: any(
        x["details"].get("reason") == "marker" for x in a))
    assert any(x["details"].get("reason") == "marker" for x in actions)
    assert not any(x["details"].get("reason") == "not mine to do" for x in actions)


def test_a_manual_trigger_runs_the_services_workflow_and_is_audited_with_who(stack):
    state, settings, tokens = stack
    r = _post(state, "/api/v1/recovery/trigger", tokens["operator"],
              {"service": "care_locator", "reason": "drill"})
    assert r.status_code == 200 and r.json()["admitted"] in ("queued", "started"), r.text
    deadline = time.monotonic() + 60
    runs = []
    while time.monotonic() < deadline and not runs:
        runs = [x for x in _get(state, "/api/v1/recovery/runs", tokens["viewer"]).json()
                if x["service"] == "care_locator"]
    assert runs and runs[0]["trigger"] == "manual"
    one = _get(state, f"/api/v1/recovery/runs/{runs[0]['run_id']}", tokens["viewer"]).json()
    assert one["run_id"] == runs[0]["run_id"] and "steps" in one
    assert _get(state, "/api/v1/recovery/runs/nope", tokens["viewer"]).status_code == 404
    actions = _actions_when(settings, lambda a: any(
        x["details"].get("reason") == "drill" for x in a))
    assert any(a["action"] == "recovery_triggered" and "operator-test" in a["operator"]
               and a["details"]["reason"] == "drill" for a in actions)


def test_an_operator_forces_a_circuit_open_and_resets_it(stack):
    from actors.runtime import circuit_actor
    from healing.cluster import ClusterPolicy
    from healing.config import CircuitConfig
    from healing.window import FAILED, SUCCESS

    state, settings, tokens = stack
    name = f"care_locator:api-{uuid.uuid4().hex[:6]}"
    actor = circuit_actor(name, CircuitConfig(), ClusterPolicy(), REDIS_URL)
    import ray

    now = time.time()
    # two processes report: one sees failures, one does not (the per-process view)
    ray.get(actor.report.remote("replica-a", [(now, FAILED, False)] * 4 +
                                [(now, SUCCESS, False)] * 4, now))
    ray.get(actor.report.remote("replica-b", [(now, SUCCESS, False)] * 6, now + 1.5))
    ray.get(actor.force_open.remote(time.time(), "seed"))
    ray.get(actor.reset.remote(time.time(), "seed"))
    [viewed] = [c for c in _get(state, "/api/v1/health", tokens["viewer"]).json()["circuits"]
                if c["name"] == name]
    assert viewed["processes"]["replica-a"]["failure_rate"] == pytest.approx(0.5)
    assert viewed["processes"]["replica-b"]["failure_rate"] == 0.0
    assert viewed["calls"] == 14 and viewed["failure_rate"] == pytest.approx(4 / 14)
    r = _post(state, f"/api/v1/circuits/{name}/force-open", tokens["operator"],
              {"reason": "provider maintenance"})
    assert r.status_code == 200 and r.json()["state"] == "forced_open", r.text
    [seen] = [c for c in _get(state, "/api/v1/circuits", tokens["viewer"]).json()
              if c["name"] == name]
    assert seen["state"] == "forced_open"
    assert _post(state, f"/api/v1/circuits/{name}/reset", tokens["viewer"]).status_code == 403
    assert _post(state, f"/api/v1/circuits/{name}/reset", tokens["operator"]).json()[
        "state"] == "closed"
    assert _post(state, "/api/v1/circuits/nope:none/reset", tokens["operator"]
                 ).status_code == 404
    actions = _actions_when(settings, lambda a: sum(
        x["details"].get("circuit") == name for x in a) >= 2)
    mine = [a for a in actions if a["details"].get("circuit") == name]
    assert [a["action"] for a in mine] == ["circuit_force_open", "circuit_reset"]


def test_tokens_are_made_listed_and_revoked_by_an_admin_only(stack):
    state, _settings, tokens = stack
    made = _post(state, "/api/v1/tokens", tokens["admin"], {"role": "viewer", "name": "dana"})
    assert made.status_code == 201
    secret, token_id = made.json()["token"], made.json()["id"]
    assert _get(state, "/api/v1/health", secret).status_code == 200
    listed = _get(state, "/api/v1/tokens", tokens["admin"]).json()
    assert any(t["id"] == token_id for t in listed)
    assert all("token" not in t and "hash" not in t for t in listed)
    revoked = httpx.delete(f"{state['url']}/api/v1/tokens/{token_id}", timeout=30,
                           headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert _get(state, "/api/v1/health", secret).status_code == 401
    bad = _post(state, "/api/v1/tokens", tokens["admin"], {"role": "root", "name": "x"})
    assert bad.status_code == 422


def test_metrics_parse_as_prometheus_and_the_audit_trail_pages(stack):
    state, settings, tokens = stack
    text = _get(state, "/metrics", tokens["viewer"]).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"selfheal_circuit_state", "selfheal_audit_spool_segments",
            "selfheal_workflow_runs", "selfheal_requests_shed"} <= set(families)
    assert families["selfheal_workflow_runs"].type == "counter"
    # the manual triggers earlier tests made are detections too, counted exactly
    manual = [s for s in families["selfheal_detections"].samples
              if s.labels == {"service": "care_locator", "signal": "manual"}]
    assert manual and manual[0].value >= 1
    # and each with its time, as /api/v1/detections lists them
    found = _get(state, "/api/v1/detections?service=care_locator", tokens["viewer"]).json()
    mine = [d for d in found if d["trigger"] == "manual"]
    # (the counter also holds earlier stacks' triggers on this Redis; the list does not)
    assert 1 <= len(mine) <= manual[0].value and all(d["at"] > 0 for d in mine)
    assert _get(state, f"/api/v1/detections?since={time.time() + 3600}",
                tokens["viewer"]).json() == []
    # the error watch's rounds, each with what it read of every watched service (one round
    # run now, as the orchestrator runs one every beat: the stack may be younger than a beat)
    import ray

    orch = ray.get_actor("orchestrator", namespace="selfheal")
    ray.get(orch.check_error_thresholds.remote(), timeout=30)
    rounds = _get(state, "/api/v1/watch?service=care_locator", tokens["viewer"]).json()
    assert rounds and all(set(r["services"]) == {"care_locator"} for r in rounds)
    assert {"errors", "calls", "recent_errors", "recent_calls", "admitted"} == set(
        rounds[-1]["services"]["care_locator"])
    assert len(_get(state, "/api/v1/watch", tokens["viewer"]).json()[-1]["services"]) > 1
    _actions_when(settings, lambda a: len(a) >= 1)
    # earlier tests' workflow runs may still be flushing records, so the pages are compared
    # with a listing that did not change while they were read
    listing = "/api/v1/audit?kind=operator_action"
    deadline = time.monotonic() + 30
    while True:
        before = _get(state, listing + "&limit=1000", tokens["auditor"]).json()
        page = _get(state, listing + "&limit=2", tokens["auditor"]).json()
        rest = _get(state, listing + "&offset=2&limit=1000", tokens["auditor"]).json()
        after = _get(state, listing + "&limit=1000", tokens["auditor"]).json()
        if before == after or time.monotonic() > deadline:
            break
    assert before == after, "the operator actions never stopped changing"
    assert page["limit"] == 2 and len(page["items"]) <= 2 and page["total"] >= 1
    assert page["total"] == rest["total"] == len(before["items"])
    assert [x["id"] for x in page["items"] + rest["items"]] == \
        [x["id"] for x in before["items"]]
    assert _get(state, "/api/v1/audit?kind=nonsense", tokens["auditor"]).status_code == 422
    verdict = _post(state, "/api/v1/audit/verify", tokens["auditor"]).json()
    assert verdict["intact"] is True, json.dumps(verdict)[:500]
    doc = _get(state, "/openapi.json").json()
    assert "/api/v1/circuits/{name}/reset" in doc["paths"]


def test_an_operator_acknowledges_and_resolves_an_alert_and_its_pagerduty_incident(stack):
    state, settings, tokens = stack
    pagerduty = state["pagerduty"]
    # care_locator has one provider: its manual workflow alerts first (then scales and
    # restarts, which fail here: no deployment), so the trigger raises a real alert
    assert _post(state, "/api/v1/recovery/trigger", tokens["operator"],
                 {"service": "care_locator", "reason": "alert drill"}).status_code == 200
    deadline = time.monotonic() + 60
    alerts = []
    while time.monotonic() < deadline and not alerts:
        alerts = [a for a in _get(state, "/api/v1/alerts?active=true", tokens["viewer"]).json()
                  if a["service"] == "care_locator"]
    assert alerts, "the workflow's alert step raised no alert"
    key = alerts[0]["dedup_key"]
    triggered = [b for _, b in pagerduty.received if b.get("dedup_key") == key]
    assert triggered and triggered[0]["event_action"] == "trigger"
    assert _post(state, f"/api/v1/alerts/{key}/acknowledge", tokens["viewer"]
                 ).status_code == 403
    ack = _post(state, f"/api/v1/alerts/{key}/acknowledge", tokens["operator"])
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged", ack.text
    assert _post(state, f"/api/v1/alerts/{key}/resolve", tokens["operator"]
                 ).json()["status"] == "resolved"
    actions = [b["event_action"] for _, b in pagerduty.received if b.get("dedup_key") == key]
    assert actions[-2:] == ["acknowledge", "resolve"]
    assert not any(a["dedup_key"] == key for a in _get(
        state, "/api/v1/alerts?active=true", tokens["viewer"]).json())
    assert _post(state, "/api/v1/alerts/selfheal-nope/resolve", tokens["operator"]
                 ).status_code == 404
    logged = _actions_when(settings, lambda a: sum(
        x["details"].get("dedup_key") == key for x in a) >= 2)
    assert [x["action"] for x in logged if x["details"].get("dedup_key") == key] == [
        "alert_acknowledge", "alert_resolve"]


def test_killed_actors_come_back_with_every_run_alert_check_and_threshold(stack):
    """Kill the orchestrator and the health monitor (Ray restarts them): the API answers
    the same afterwards."""
    import ray

    from actors.health_checks import CheckSpec
    from actors.ray_gateway import find_actor, kill

    state, _settings, tokens = stack
    health, orch = find_actor("health"), find_actor("orchestrator")
    ray.get(health.register.remote(CheckSpec(
        "redis-local", "redis", REDIS_URL, policy={"interval_s": 3600.0}, service="database")))
    ray.get(orch.adopt_threshold.remote("database", 0.2, 60.0, "a restart test"))
    assert _post(state, "/api/v1/recovery/trigger", tokens["operator"],
                 {"service": "api_server", "reason": "before the kill"}).status_code == 200
    ray.get(orch.wait_idle.remote(60))

    def ok(r):
        assert r.status_code == 200, r.text  # 503 while an actor restarts: asked again
        return r.json()

    def seen():
        runs = ok(_get(state, "/api/v1/recovery/runs", tokens["viewer"]))
        steps = {r["run_id"]: _get(state, f"/api/v1/recovery/runs/{r['run_id']}",
                                   tokens["viewer"]).json()["steps"] for r in runs}
        checks = _get(state, "/api/v1/health", tokens["viewer"]).json()["health_checks"]
        return {"runs": runs, "steps": steps,
                "alerts": ok(_get(state, "/api/v1/alerts", tokens["viewer"])),
                "models": ok(_get(state, "/api/v1/models", tokens["viewer"])),
                "checks": sorted((c["name"], c["kind"]) for c in checks.values())}

    before = seen()
    assert before["runs"] and ("redis-local", "redis") in before["checks"]
    assert before["models"]["thresholds"]["database"] == [0.2, 60.0]
    monitor = find_actor("monitor")
    assert ray.get(monitor.state.remote())["running"]
    # the monitor learns a service's usual error rate from its metric stream
    from actors.stores.metric_stream import MetricRecorder
    from actors.stores.redis_conn import connect
    from healing.outcome import OutcomeRecord

    recorder = MetricRecorder(connect(REDIS_URL), sample_rate=1.0)
    t = time.time()
    for k in range(50):
        recorder.record(OutcomeRecord("restart_probe", "p", True, 0.01, None, "primary", None,
                                      "informational", "low", t + k * 0.01))
    recorder.flush()
    deadline = time.monotonic() + 30
    while "restart_probe" not in ray.get(monitor.state.remote())["services"]:
        assert time.monotonic() < deadline, "the monitor never read the stream"
    assert ray.get(monitor.save_state.remote())
    learnt = ray.get(monitor.state.remote())
    kill(orch, restart=True)
    kill(health, restart=True)
    kill(monitor, restart=True)
    deadline = time.monotonic() + 60
    after = None
    while time.monotonic() < deadline:
        try:
            ray.get([find_actor("orchestrator").ping.remote(),
                     find_actor("health").ping.remote()], timeout=5)
            after = seen()
            break
        except Exception:  # still restarting
            continue
    assert after == before
    deadline = time.monotonic() + 30  # the restarted monitor reads the streams again
    while not ray.get(find_actor("monitor").state.remote())["running"]:
        assert time.monotonic() < deadline, "the restarted monitor did not start"
    again = ray.get(find_actor("monitor").state.remote())
    assert "restart_probe" in again["services"] and again["scored"] >= learnt["scored"]
    # the adopted threshold's history came back too: an operator can still undo it
    undone = _post(state, "/api/v1/thresholds/database/revert", tokens["operator"])
    assert undone.status_code == 200 and undone.json()["old"] == [0.2, 60.0], undone.text
    assert _get(state, "/api/v1/models", tokens["viewer"]).json()["thresholds"][
        "database"] == undone.json()["new"]
    again = _post(state, "/api/v1/thresholds/database/revert", tokens["operator"])
    assert again.status_code == 404, again.text


def test_recurring_failures_in_the_live_trail_come_back_as_patterns(stack):
    """Failures of one service at about 14:00 UTC on six days running, its circuit opening
    each time, written through the audit trail as the guard writes them: a daily pattern,
    with its priority and impact. Failures at other hours, with no circuit opening, are the
    background errors every service has: no pattern."""
    from actors.stores.audit_trail import AuditTrail
    from healing.audit import PatientImpact, circuit_transition, failure_event
    from healing.safety import ClinicalContext

    def opened(service, t):
        trail.append(circuit_transition(service=service, at=t, circuit=f"{service}:db",
                                        from_state="CLOSED", to_state="OPEN",
                                        reason="failure rate"))

    def failed(service, t, kind, error, provider="billing_db"):
        trail.append(failure_event(
            service=service, at=t, context=ClinicalContext("administrative", "low"),
            pseudonymize=trail.pseudonymize, error_kind=kind, error=error, provider=provider,
            recovery_actions=[], served_by=None, integrity=None, clinician_notified=False,
            patient_impact=PatientImpact.SERVICE_UNAVAILABLE))

    state, settings, tokens = stack
    today = time.time() // 86400 * 86400
    trail = AuditTrail.from_config(settings.audit_config(), b"k" * 32)
    try:
        for day in range(1, 7):
            at_14 = today - day * 86400 + 14 * 3600
            for minute in range(3):  # a few failures each time: one event per minute
                failed("billing_lookup", at_14 + 60 * minute, "TimeoutError", "deadlock")
            opened("billing_lookup", at_14 + 10)
            for hour in (3, 9, 20):  # a background error now and then: no incident
                failed("billing_lookup", today - day * 86400 + hour * 3600 + day * 60,
                       "TimeoutError", "one slow query")
            # the gateway in front of it fails half a minute later, every time
            opened("billing_gateway", at_14 + 40)
            failed("billing_gateway", at_14 + 30, "UpstreamError", "billing lookup failed",
                   provider=None)
        trail.flush()
    finally:
        trail.close()
    found = [p for p in _get(state, "/api/v1/patterns?days=10", tokens["viewer"]).json()
             if p["service"] == "billing_lookup"]
    assert len(found) == 1, found
    [p] = found
    assert p["frequency"] == "daily" and p["typical_cause"] == "TimeoutError"
    assert p["occurrences"] == 6 and p["priority"] == "high"
    assert "could be prevented" in p["estimated_impact"]
    assert p["recommended_action"] == "restart"
    assert p["next_expected"] % 86400 == pytest.approx(14 * 3600, abs=120)
    assert _get(state, "/api/v1/patterns?days=0", tokens["viewer"]).status_code == 422
    # by service combination: the two fail together, the lookup first
    combos = [c for c in _get(state, "/api/v1/patterns/combinations?days=10",
                              tokens["viewer"]).json()
              if c["services"] == ["billing_gateway", "billing_lookup"]]
    assert len(combos) == 1, combos
    [c] = combos
    assert c["occurrences"] == 6 and c["leader"] == "billing_lookup" and c["led"] == 6
    assert c["typical_cause"] == "TimeoutError" and c["typical_spread_s"] == 30
    assert c["recommended_action"].startswith("heal billing_lookup first")
    assert _get(state, "/api/v1/patterns/combinations").status_code == 401


def _monitor_follows(version, timeout_s=20.0):
    """Whether the stack's monitor runs ``version`` within ``timeout_s`` (it is told by a
    message; its own check comes only every minute)."""
    import ray

    monitor = ray.get_actor("monitor", namespace="selfheal")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.get(monitor.state.remote())["model_version"] == version:
            return True
        time.sleep(0.05)
    return False


def test_an_operator_promotes_and_rolls_back_the_monitor_model(stack):
    from learning.model_registry import log_training, register
    from learning.monitor import MonitorPolicy
    from learning.training import MonitorModel

    state, settings, tokens = stack
    uri = settings.mlflow_uri()
    made = [register(uri, log_training(uri, MonitorModel({"svc": MonitorPolicy(h=h)},
                                                         {"svc": {}}), {}, 10)[1])
            for h in (8.0, 12.0)]
    listed = _get(state, "/api/v1/models", tokens["viewer"]).json()
    assert {v["version"] for v in listed["versions"]} >= set(made)
    assert "thresholds" in listed
    first, second = made
    assert _post(state, f"/api/v1/models/{first}/promote", tokens["viewer"],
                 {"reason": "x"}).status_code == 403
    for v in (first, second):
        r = _post(state, f"/api/v1/models/{v}/promote", tokens["operator"],
                  {"reason": f"replay looked better for {v}"})
        assert r.status_code == 200 and r.json()["champion"] == v, r.text
        # the running monitor is told: it follows at once, not at its next minute's check
        assert _monitor_follows(v), v
    back = _post(state, "/api/v1/models/rollback", tokens["operator"], {"reason": "regressed"})
    assert back.status_code == 200 and back.json()["champion"] == first, back.text
    assert _monitor_follows(first)
    assert _post(state, "/api/v1/models/999999/promote", tokens["operator"],
                 {"reason": "x"}).status_code == 404
    actions = _actions_when(settings, lambda a: any(
        x["action"] == "model_rolled_back" for x in a))
    assert [(a["action"], a["details"]["version"]) for a in actions
            if a["action"].startswith("model_")][-3:] == [
        ("model_promoted", first), ("model_promoted", second), ("model_rolled_back", first)]


def test_an_operator_sets_an_error_threshold_and_undoes_it(stack):
    """What the threshold-tuning notebook ends with: a threshold put in force through the
    API, audited with who and why, in force at once, and undone by revert."""
    import redis

    state, settings, tokens = stack
    service = f"tuned{uuid.uuid4().hex[:6]}"
    path = f"/api/v1/thresholds/{service}"
    body = {"threshold": 0.15, "window_s": 30, "reason": "notebook: 2 % false positives"}
    # a service nothing has recorded is refused: a typo would watch nothing
    assert _post(state, path, tokens["operator"], body).status_code == 404
    client = redis.Redis.from_url(REDIS_URL)
    client.xadd(f"metrics:{service}", {"n": 0, "events": "[]"})
    try:
        assert _post(state, path, tokens["viewer"], body).status_code == 403
        for bad in ({"threshold": 0}, {"threshold": 1.5}, {"threshold": 0.1, "window_s": 1},
                    {"threshold": "high"}):
            assert _post(state, path, tokens["operator"], bad).status_code == 422, bad
        listed = _get(state, "/api/v1/models", tokens["viewer"]).json()["thresholds"]
        assert service not in listed  # nothing above changed anything
        done = _post(state, path, tokens["operator"], body)
        assert done.status_code == 200 and done.json()["new"] == [0.15, 30.0], done.text
        listed = _get(state, "/api/v1/models", tokens["viewer"]).json()["thresholds"]
        assert listed[service] == [0.15, 30.0]
        undone = _post(state, path + "/revert", tokens["operator"])
        assert undone.status_code == 200 and undone.json()["new"] is None, undone.text
        assert service not in _get(state, "/api/v1/models", tokens["viewer"]).json()[
            "thresholds"]
        actions = _actions_when(settings, lambda a: sum(
            x["action"].startswith("error_threshold") and service in json.dumps(x)
            for x in a) >= 1)
        requested = [a for a in actions if a["action"] == "error_threshold_change_requested"
                     and a["details"]["reason"] == body["reason"]]
        assert len(requested) == 1 and "operator" in requested[0]["operator"]
    finally:
        client.delete(f"metrics:{service}")


def test_each_services_slo_and_the_pager_show_through_the_api_and_metrics(stack):
    """The running monitor keeps the error budget of a service it reads in the metric
    streams: its burn rates reach GET /api/v1/slo and /metrics."""
    from tests.serve.traffic import burning_budget

    state, _settings, tokens = stack
    with burning_budget("slo", seed=3) as service:
        assert _get(state, "/api/v1/slo").status_code == 401
        deadline = time.monotonic() + 60
        body = {}
        while time.monotonic() < deadline and service not in body.get("services", {}):
            body = _get(state, "/api/v1/slo", tokens["viewer"]).json()
        assert body["paging"] == "two_key" and isinstance(body["notices"], list)
        mine = body["services"][service]
        assert mine["objective"] == 0.999
        assert 5 < mine["burn_rates"]["300"] < 20  # ~10x, the successes re-weighted
        text = _get(state, "/metrics", tokens["viewer"]).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        burn = [x for x in families["selfheal_slo_burn_rate"].samples
                if x.labels == {"service": service, "window_s": "300"}]
        assert burn and 5 < burn[0].value < 20
        assert any(x.labels == {"service": service} for x in
                   families["selfheal_slo_error_budget_remaining"].samples)
        # the monitor reads the memory of this node's Serve replicas: the API's own too
        assert _get(state, "/api/v1/resources").status_code == 401
        deadline = time.monotonic() + 60
        replicas = {}
        while time.monotonic() < deadline and not replicas:
            replicas = _get(state, "/api/v1/resources", tokens["viewer"]).json()["replicas"]
        mine = [r for target, r in replicas.items() if target.startswith("selfheal/")]
        assert mine and all(0 < r["rss_mb"] < r["limit_mb"] == 2048 for r in mine), replicas
        assert all(r["cpu_percent"] >= 0 for r in mine)
        # and selfheal's own actors, for the operator to see: the orchestrator among them
        actors = _get(state, "/api/v1/resources", tokens["viewer"]).json()["actors"]
        assert any(t.startswith("orchestrator/") and a["rss_mb"] > 0
                   for t, a in actors.items()), actors


def test_scheduled_trainings_are_visible_with_their_phases(stack, ray_cluster):
    from actors.ray_gateway import find_actor
    from actors.training_job import PHASES

    state, _settings, tokens = stack
    before = _get(state, "/api/v1/training", tokens["viewer"])
    assert before.status_code == 200, before.text
    body = before.json()
    assert body["schedule"] == "0 3 1 1 *" and body["next_at"] > time.time()
    assert _get(state, "/api/v1/training").status_code == 401
    # `selfheal up` started the scheduler: at its fire time it trains on the live stores
    scheduler = find_actor("training-scheduler")
    assert ray_cluster.get(scheduler.tick.remote(body["next_at"] + 1)) == body["next_at"]
    # the next fire time (a year on) comes while that training still runs: missed, and said
    later = body["next_at"] + 366 * 86400
    assert ray_cluster.get(scheduler.tick.remote(later)) is None
    assert ray_cluster.get(scheduler.wait_idle.remote(600))
    runs = _get(state, "/api/v1/training", tokens["viewer"]).json()["runs"]
    missed = [r for r in runs if r["status"] == "missed"]
    assert len(missed) == 1 and "still running" in missed[0]["detail"]
    [run] = [r for r in runs if r["status"] != "missed"]
    assert run["status"] == "succeeded", run
    assert run["scheduled_for"] == body["next_at"] and set(run["phases_s"]) == set(PHASES)
    assert run["version"] in {v["version"] for v in
                              _get(state, "/api/v1/models", tokens["viewer"]).json()["versions"]}


# -- fuzzing the API from its own OpenAPI document ----------------------------------------

_PUBLIC = {"/api/v1/livez"}


def _snapshot(state, tokens):
    """What a mutation could change: circuit states, tokens, alerts' statuses, runs."""
    admin = tokens["admin"]
    return ({c["name"]: c["state"] for c in _get(state, "/api/v1/circuits", admin).json()},
            _get(state, "/api/v1/tokens", admin).json(),
            {a["dedup_key"]: a["status"] for a in _get(state, "/api/v1/alerts", admin).json()},
            len(_get(state, "/api/v1/recovery/runs", admin).json()))


def test_fuzzed_requests_never_crash_and_refused_ones_change_nothing(stack):
    """Every operation in the API's own OpenAPI document, with requests schemathesis makes
    from it: anonymous, with a forged token, as a viewer and as an admin. No 5xx ever; no
    token is 401; a viewer's mutation is refused and changes nothing."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    state, settings_, tokens = stack
    schema = schemathesis.openapi.from_url(f"{state['url']}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    def check(case):
        mutation = case.method.upper() in ("POST", "DELETE")
        before = _snapshot(state, tokens) if mutation else None
        anonymous = case.call(base_url=state["url"], headers={"Authorization": ""},
                              timeout=30)
        assert anonymous.status_code < 500, anonymous.text
        if case.path not in _PUBLIC:
            assert anonymous.status_code == 401, (case.path, anonymous.text)
        bogus = case.call(base_url=state["url"], timeout=30,
                          headers={"Authorization": "Bearer shk_000000000000_" + "x" * 43})
        assert bogus.status_code < 500
        viewer = case.call(base_url=state["url"], timeout=30,
                           headers={"Authorization": f"Bearer {tokens['viewer']}"})
        assert viewer.status_code < 500, viewer.text
        if mutation:
            assert viewer.status_code in (403, 422), (case.path, viewer.status_code)
            if viewer.status_code == 403:
                assert _snapshot(state, tokens) == before, "a refused request changed state"
        admin = case.call(base_url=state["url"], timeout=30,
                          headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert admin.status_code < 500, (case.path, admin.text)

    for operation in operations:
        run = settings(max_examples=4, deadline=None, derandomize=True, database=None,
                       suppress_health_check=list(HealthCheck))(
            given(operation.as_strategy())(check))
        run()
    # and nothing a viewer asked for reached the audit trail as a change
    actions = _actions_when(settings_, lambda a: False, timeout_s=2)
    assert not [a for a in actions if "viewer-test" in a["operator"]]


def test_cors_is_off_unless_configured_and_the_serve_config_deploys_the_app(stack,
                                                                          monkeypatch):
    """No CORS header by default; with origins configured, only they get one. The Serve
    config shipped in the repo is valid for `serve deploy` and names an importable builder."""
    import importlib
    import pathlib

    import yaml
    from fastapi.testclient import TestClient
    from ray.serve.schema import ServeDeploySchema

    from actors.control import ControlBackend
    from serve.control_api import build_app

    state, settings, tokens = stack
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    r = httpx.options(f"{state['url']}/api/v1/health", headers=preflight, timeout=30)
    assert "access-control-allow-origin" not in r.headers
    backend = ControlBackend(settings)
    try:
        client = TestClient(build_app(backend, cors_origins=("https://ops.example",)))
        ok = client.options("/api/v1/health", headers={**preflight,
                                                       "Origin": "https://ops.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ops.example"
        other = client.options("/api/v1/health", headers=preflight)
        assert "access-control-allow-origin" not in other.headers
    finally:
        backend.close()
    config = pathlib.Path(__file__).resolve().parents[2] / "serve" / "serve_config.yaml"
    schema = ServeDeploySchema.parse_obj(yaml.safe_load(config.read_text()))
    [app] = schema.applications
    assert schema.http_options.host == "127.0.0.1"
    module, _, attr = app.import_path.partition(":")
    builder = getattr(importlib.import_module(module), attr)
    # what `serve run serve.control_app:app_builder` does, settings from the environment
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SELFHEAL_DATA_DIR", str(settings.data_dir))
    from ray import serve

    from actors.serve_control import delete_app

    serve.run(builder({}), name="selfheal-built", route_prefix="/built")
    try:
        built = httpx.get(f"{state['url']}/built/api/v1/health", timeout=30,
                          headers={"Authorization": f"Bearer {tokens['viewer']}"})
        assert built.status_code == 200 and "circuits" in built.json()
    finally:
        delete_app("selfheal-built")


def test_a_token_revoked_through_another_replica_is_refused_after_the_cache_time(stack):
    """Two API replicas over one database (each its own app and cache), on a manual clock:
    the replica that revokes refuses at once; the other within ``token_cache_s``."""
    from fastapi.testclient import TestClient

    from actors.control import ControlBackend
    from healing.clock import ManualClock
    from serve.control_api import build_app

    _state, settings, tokens = stack
    clock = ManualClock(start=1000.0)
    one, two = ControlBackend(settings, clock=clock), ControlBackend(settings, clock=clock)
    try:
        a = TestClient(build_app(one, token_cache_s=5.0))
        b = TestClient(build_app(two, token_cache_s=5.0))
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        made = a.post("/api/v1/tokens", headers=admin, json={"role": "viewer", "name": "rota"})
        secret = {"Authorization": f"Bearer {made.json()['token']}"}
        assert a.get("/api/v1/whoami", headers=secret).status_code == 200
        assert b.get("/api/v1/whoami", headers=secret).json()["role"] == "viewer"
        assert a.delete(f"/api/v1/tokens/{made.json()['id']}", headers=admin).status_code == 200
        assert a.get("/api/v1/whoami", headers=secret).status_code == 401
        assert b.get("/api/v1/whoami", headers=secret).status_code == 200  # the trade
        clock.advance(5.0)
        assert b.get("/api/v1/whoami", headers=secret).status_code == 401
        # a refusal is not kept: a malformed token is refused, a good one still accepted
        assert b.get("/api/v1/whoami", headers={"Authorization": "Bearer x"}).status_code == 401
        assert b.get("/api/v1/whoami", headers=admin).status_code == 200
    finally:
        one.close()
        two.close()
