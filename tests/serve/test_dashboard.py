"""The operator dashboard in a real browser (headless Debian chromium, driven by Playwright)
against a live stack: real Ray Serve, Redis, PostgreSQL. Each test saves a screenshot under
``test-artifacts/`` (set SELFHEAL_ARTIFACTS to put them elsewhere)."""

from __future__ import annotations

import os
import pathlib
import shutil
import time
import uuid

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = pathlib.Path(os.environ.get("SELFHEAL_ARTIFACTS", "test-artifacts"))
REDIS_URL = "redis://127.0.0.1:6379/0"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium "
                                "(scripts/services.sh installs it)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def _page(browser, state, token):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(f"{state['url']}/")  # redirected to the dashboard
    page.fill("#token", token)
    page.click("#signin button")
    page.wait_for_selector('#status[data-state="live"]', timeout=10_000)
    return page


def _shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _failing_circuit(service="clinical_reasoning"):
    """A circuit with its cluster actor, fed failures by two processes until it opens."""
    import ray

    from actors.runtime import circuit_actor
    from healing.cluster import ClusterPolicy
    from healing.config import CircuitConfig
    from healing.window import FAILED

    name = f"{service}:gemini-{uuid.uuid4().hex[:6]}"
    actor = circuit_actor(name, CircuitConfig(window_size=20, minimum_number_of_calls=10),
                          ClusterPolicy(), REDIS_URL)
    ray.get(actor.tick.remote(time.time()))
    return name, actor, lambda: [ray.get(actor.report.remote(
        p, [(time.time(), FAILED, False)] * 12, time.time())) for p in ("replica-0", "replica-1")]


def test_an_outage_shows_within_5_s_and_an_operator_resets_the_circuit(stack, browser):
    state, _settings, tokens = stack
    name, _actor, fail = _failing_circuit()
    page = _page(browser, state, tokens["operator"])
    row = f'tr[data-circuit="{name}"]'
    page.wait_for_selector(f'{row} td[data-state="closed"]', timeout=10_000)
    t0 = time.monotonic()
    fail()  # the outage: every call fails on both replicas
    page.wait_for_selector(f'{row} td[data-state="open"]', timeout=5_000)
    shown_after = time.monotonic() - t0
    assert shown_after < 5.0
    assert "OPEN" in page.inner_text(f"{row} td[data-state]")  # text and shape, not colour
    _shot(page, "dashboard-outage")
    page.click(f'{row} button[data-action="reset"]')
    page.wait_for_selector(f'{row} td[data-state="closed"]', timeout=5_000)
    _shot(page, "dashboard-after-reset")
    page.close()


def test_a_viewer_is_offered_no_controls_and_a_forged_reset_is_refused(stack, browser):
    state, _settings, tokens = stack
    name, _actor, _fail = _failing_circuit()
    page = _page(browser, state, tokens["viewer"])
    page.wait_for_selector(f'tr[data-circuit="{name}"]', timeout=10_000)
    assert page.query_selector_all("button[data-action]") == []
    assert "(viewer)" in page.inner_text("#who")
    # the page's own fetch, forged with the viewer's token: the API refuses it
    status = page.evaluate("""async ([name, token]) => (await fetch(
        `/api/v1/circuits/${encodeURIComponent(name)}/force-open`, {method: "POST",
         headers: {"Authorization": `Bearer ${token}`, "Content-Type": "application/json"},
         body: "{}"})).status""", [name, tokens["viewer"]])
    assert status == 403
    [circuit] = [c for c in httpx.get(f"{state['url']}/api/v1/circuits", timeout=30, headers={
        "Authorization": f"Bearer {tokens['viewer']}"}).json() if c["name"] == name]
    assert circuit["state"] == "closed"
    _shot(page, "dashboard-viewer")
    page.close()


def test_an_operator_acknowledges_an_alert_from_the_alert_panel(stack, browser):
    state, _settings, tokens = stack
    page = _page(browser, state, tokens["operator"])
    # care_locator's manual workflow alerts first (it has a single provider)
    r = httpx.post(f"{state['url']}/api/v1/recovery/trigger", timeout=30,
                   headers={"Authorization": f"Bearer {tokens['operator']}"},
                   json={"service": "care_locator", "reason": "browser test"})
    assert r.status_code == 200
    page.wait_for_selector('#alerts tr[data-alert] td[data-status="triggered"]',
                           timeout=30_000)
    row = page.query_selector('#alerts tr[data-alert]:has(td[data-status="triggered"])')
    key = row.get_attribute("data-alert")
    row.query_selector('button[data-action="acknowledge"]').click()
    page.wait_for_selector(f'#alerts tr[data-alert="{key}"] td[data-status="acknowledged"]',
                           timeout=5_000)
    _shot(page, "dashboard-alert-acknowledged")
    page.close()


def test_the_page_says_when_the_api_is_down(stack, browser):
    """The page keeps its last data and says the API cannot be reached."""
    state, _settings, tokens = stack
    page = _page(browser, state, tokens["viewer"])
    page.route("**/api/v1/**", lambda route: route.abort())  # the API goes away
    page.wait_for_selector('#status[data-state="down"]', timeout=15_000)
    assert "unreachable" in page.inner_text("#status")
    _shot(page, "dashboard-api-down")
    page.close()


def test_an_auditor_opens_a_run_to_its_steps_and_audit_records(stack, browser):
    state, _settings, tokens = stack
    r = httpx.post(f"{state['url']}/api/v1/recovery/trigger", timeout=30,
                   headers={"Authorization": f"Bearer {tokens['operator']}"},
                   json={"service": "xray_analysis", "reason": "browser test"})
    assert r.status_code == 200
    page = _page(browser, state, tokens["auditor"])
    summary = page.wait_for_selector('#runs li details:has-text("xray_analysis") summary',
                                     timeout=30_000)
    details = summary.evaluate_handle("s => s.parentElement")
    run_id = details.get_attribute("data-run")
    deadline = time.monotonic() + 30  # the run's records reach the database in the background
    while True:
        page.click(f'#runs details[data-run="{run_id}"] summary')  # open (or reopen)
        audit = page.wait_for_selector(f'#runs details[data-run="{run_id}"] li[data-audit]',
                                       timeout=10_000)
        if int(audit.get_attribute("data-audit")) > 0 or time.monotonic() > deadline:
            break
        page.click(f'#runs details[data-run="{run_id}"] summary')  # close, to reload
    assert int(audit.get_attribute("data-audit")) > 0
    steps = page.inner_text(f'#runs details[data-run="{run_id}"] ol.steps')
    assert "step 1" in steps and "audit trail:" in steps
    _shot(page, "dashboard-run-audit")
    page.close()


def test_error_budgets_and_replica_memory_show_as_the_monitor_reads_them(stack, browser):
    """A service burning its error budget at about 10x, as the running monitor computes it
    from the metric streams, and the memory of this node's Serve replicas (the API's own)."""
    from tests.serve.traffic import burning_budget

    state, _settings, tokens = stack
    headers = {"Authorization": f"Bearer {tokens['viewer']}"}
    with burning_budget("budget", seed=5) as service:
        # the page polls these every 15 s: wait for the monitor here, then read the page
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                service in httpx.get(f"{state['url']}/api/v1/slo", headers=headers,
                                     timeout=30).json()["services"]
                and httpx.get(f"{state['url']}/api/v1/resources", headers=headers,
                              timeout=30).json()["replicas"]):
            time.sleep(0.5)  # polling a real actor that works on its own beat
        page = _page(browser, state, tokens["viewer"])
        row = page.wait_for_selector(f'#slo tr[data-service="{service}"]', timeout=20_000)
        cells = [c.inner_text() for c in row.query_selector_all("td")]
        assert cells[1] == "99.90 %"
        burn_5m = next(b for b in cells[3].split(" · ") if b.endswith("(5m)"))
        assert 5 < float(burn_5m.split("\u00d7")[0]) < 20  # ~10x, the successes re-weighted
        memory = page.inner_text("#resources tbody")
        assert "selfheal/" in memory and "/ 2048 MiB" in memory
        assert "pages: two_key" in page.inner_text("#slo-paging")
        _shot(page, "dashboard-budgets-memory")
        page.close()
