// The selfheal operator dashboard: a client of the public control API (/api/v1), nothing
// more. It polls (circuits, runs and alerts every 2 s; service series, patterns, error
// budgets and memory every 15 s), says when its data is stale or the API is down, and offers only the controls the
// token's role may use; the API refuses the others anyway. Every value from the API reaches
// the page through textContent, never as HTML.
"use strict";

const FAST_MS = 2000, SLOW_MS = 15000, STALE_MS = 6000;
const OPERATE = new Set(["operator", "admin"]);
const SHAPES = { closed: "● closed", open: "▲ OPEN", half_open: "◐ half open",
                 forced_open: "◆ FORCED OPEN" };
const state = { token: sessionStorage.getItem("selfheal-token"), role: null, lastOk: 0,
                failing: false, timers: [], openRuns: new Set(), drill: null, series: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: {
    "Authorization": `Bearer ${state.token}`, "Content-Type": "application/json",
    ...(options.headers || {}) } });
  if (resp.status === 401) { signOut("the token was refused: sign in again"); throw new Error("401"); }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.detail || `HTTP ${resp.status}`);
  return body;
}

function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min`
    : `${(s / 3600).toFixed(1)} h`;
}
const clock = (t) => new Date(t * 1000).toISOString().slice(11, 19) + "Z";
const pct = (x) => `${(100 * x).toFixed(1)} %`;

function showError(text) {
  const p = document.getElementById("error");
  p.textContent = text || ""; p.hidden = !text;
}

function setStatus() {
  const s = document.getElementById("status");
  if (!state.token) { s.dataset.state = "out"; s.textContent = "signed out"; return; }
  const age = Date.now() - state.lastOk;
  if (state.failing && age > STALE_MS) {
    s.dataset.state = "down";
    s.textContent = state.lastOk ? `API unreachable: data from ${new Date(state.lastOk)
      .toISOString().slice(11, 19)}Z` : "API unreachable";
  } else if (age > STALE_MS) {
    s.dataset.state = "stale"; s.textContent = `stale: last update ${Math.round(age / 1000)} s ago`;
  } else { s.dataset.state = "live"; s.textContent = "live"; }
}

// -- actions ----------------------------------------------------------------------------

async function act(path, body, what) {
  try {
    await api(path, { method: "POST", body: JSON.stringify(body || {}) });
    showError("");
    await fast();
  } catch (e) { showError(`${what} refused: ${e.message}`); }
}

const canOperate = () => OPERATE.has(state.role);

// -- panels -----------------------------------------------------------------------------

function renderCircuits(circuits) {
  const tbody = document.querySelector("#circuits tbody");
  tbody.replaceChildren(...circuits.map((c) => {
    const threshold = c.settings.failure_rate_threshold;
    const bar = el("span", { class: "bar", title: `failure rate ${pct(c.failure_rate)}` },
      el("i", { style: `width:${Math.min(100, 100 * c.failure_rate)}%` }),
      threshold !== undefined ? el("b", { style: `left:${100 * threshold}%` }) : null);
    const procs = Object.entries(c.processes).map(([p, v]) =>
      `${p}${c.isolated.includes(p) ? " (isolated)" : ""}: ${pct(v.failure_rate)} of ${v.calls}`);
    const controls = canOperate() ? [
      el("button", { type: "button", "data-action": "reset", "data-circuit": c.name,
        onclick: () => act(`/api/v1/circuits/${encodeURIComponent(c.name)}/reset`,
                           { reason: "reset from the dashboard" }, "reset") }, "Reset"),
      " ",
      el("button", { type: "button", "data-action": "force-open", "data-circuit": c.name,
        onclick: () => act(`/api/v1/circuits/${encodeURIComponent(c.name)}/force-open`,
                           { reason: "forced open from the dashboard" }, "force open") },
         "Force open")] : [];
    return el("tr", { "data-circuit": c.name },
      el("td", {}, c.name),
      el("td", { class: `state-${c.state}`, "data-state": c.state },
         SHAPES[c.state] || c.state),
      el("td", {}, bar, `${pct(c.failure_rate)} / ${threshold !== undefined ? pct(threshold) : "?"}`),
      el("td", {}, c.calls),
      el("td", {}, c.retry_at ? `${clock(c.retry_at)} (in ${Math.max(0, Math.round(
        c.retry_at - Date.now() / 1000))} s)` : "—"),
      el("td", { class: "dim", title: procs.join("\n") }, procs.length
        ? `${procs.length} (${c.isolated.length} isolated)` : "—"),
      el("td", { class: "dim" }, c.settings.window
        ? `${c.settings.window}, min ${c.settings.minimum_number_of_calls}, open ${c.settings.wait_in_open_s} s`
        : ""),
      el("td", {}, controls));
  }));
  if (!circuits.length) tbody.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "dim" },
    "no circuits yet: they appear when a guarded process first calls a provider")));
}

function renderRuns(runs) {
  const ol = document.querySelector("#runs ol");
  const newest = [...runs].reverse().slice(0, 30);
  ol.replaceChildren(...newest.map((r) => {
    const outcome = r.ended === undefined ? "running" : r.succeeded ? "succeeded"
      : r.ended === "completed" ? "completed, a step failed" : r.ended.replaceAll("_", " ");
    const cls = r.ended === undefined ? "warn" : r.succeeded ? "ok" : "bad";
    const took = r.ended_at ? `${(r.ended_at - r.started_at).toFixed(1)} s` : "";
    const details = el("details", { "data-run": r.run_id,
      ontoggle: (ev) => toggleRun(ev.target, r.run_id) },
      el("summary", {}, `${clock(r.started_at)} ${r.service}: ${r.workflow} on ${r.trigger} — `,
         el("span", { class: cls }, outcome), took ? ` in ${took}` : ""),
      el("ol", { class: "steps" }));
    if (state.openRuns.has(r.run_id)) { details.open = true; loadSteps(details, r.run_id); }
    return el("li", {}, details);
  }));
  if (!runs.length) ol.replaceChildren(el("li", { class: "dim" }, "no recovery runs yet"));
}

function toggleRun(details, runId) {
  if (details.open) { state.openRuns.add(runId); loadSteps(details, runId); }
  else state.openRuns.delete(runId);
}

const AUDIT = new Set(["auditor", "admin"]);

async function loadSteps(details, runId) {
  try {
    const run = await api(`/api/v1/recovery/runs/${encodeURIComponent(runId)}`);
    const items = run.steps.map((s) =>
      el("li", {}, `${clock(s.at)} step ${s.step + 1}${s.rollback ? " (rollback)" : ""}: ${s.action} `,
         el("span", { class: s.status === "succeeded" ? "ok" : s.status === "started" ? "dim" : "bad" },
            s.status), s.error ? ` — ${s.error}` : ""));
    if (AUDIT.has(state.role)) {  // the run's records in the audit trail, with their hashes
      const until = (run.ended_at || Date.now() / 1000) + 1;
      const page = await api(`/api/v1/audit?kind=recovery_step&service=${encodeURIComponent(
        run.service)}&since=${run.started_at - 1}&until=${until}&limit=200`);
      const mine = page.items.filter((r) => r.data.workflow_id === runId);
      items.push(el("li", { class: "dim", "data-audit": mine.length },
        `audit trail: ${mine.length} records (${mine.map((r) => r.hash.slice(0, 8)).join(", ")})`));
    }
    details.querySelector("ol.steps").replaceChildren(...items);
  } catch (e) { showError(`run ${runId}: ${e.message}`); }
}

function renderAlerts(alerts) {
  const tbody = document.querySelector("#alerts tbody");
  const active = alerts.filter((a) => a.status !== "resolved");
  tbody.replaceChildren(...active.map((a) => el("tr", { "data-alert": a.dedup_key },
    el("td", { class: `sev-${a.severity}` }, a.severity.toUpperCase()),
    el("td", {}, a.service), el("td", {}, a.summary), el("td", {}, ago(a.triggered_at)),
    el("td", { "data-status": a.status }, a.status),
    el("td", { class: "dim" }, (a.channels || []).join(" + ")),
    el("td", {}, canOperate() ? [
      a.status === "triggered" ? el("button", { type: "button", "data-action": "acknowledge",
        onclick: () => act(`/api/v1/alerts/${encodeURIComponent(a.dedup_key)}/acknowledge`, {},
                           "acknowledge") }, "Acknowledge") : null, " ",
      el("button", { type: "button", "data-action": "resolve",
        onclick: () => act(`/api/v1/alerts/${encodeURIComponent(a.dedup_key)}/resolve`, {},
                           "resolve") }, "Resolve")] : []))));
  if (!active.length) tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "dim" },
    "no active alerts")));
}

function renderPatterns(patterns) {
  const ol = document.querySelector("#patterns ol");
  ol.replaceChildren(...patterns.map((p) => el("li", {},
    el("span", { class: p.priority === "high" ? "bad" : p.priority === "medium" ? "warn" : "" },
       `[${p.priority}] `), p.description, ` — next ${clock(p.next_expected)}; ${p.estimated_impact}`)));
  if (!patterns.length) ol.replaceChildren(el("li", { class: "dim" },
    "no recurring failures in the last 30 days"));
}

// a window in seconds as an operator says it: 300 -> 5m, 3600 -> 1h, 2592000 -> 30d
const span = (s) => (s % 86400 === 0 ? `${s / 86400}d` : s % 3600 === 0 ? `${s / 3600}h`
  : s % 60 === 0 ? `${s / 60}m` : `${s}s`);

function renderSlo(data) {
  document.getElementById("slo-paging").textContent = `(pages: ${data.paging}` +
    `${data.at ? `; read ${ago(data.at)} ago` : ""})`;
  const tbody = document.querySelector("#slo tbody");
  const names = Object.keys(data.services).sort();
  tbody.replaceChildren(...names.map((name) => {
    const s = data.services[name];
    const left = s.budget_remaining;
    const burns = Object.entries(s.burn_rates).sort((a, b) => Number(a[0]) - Number(b[0]))
      .map(([w, r]) => `${r.toFixed(1)}× (${span(Number(w))})`).join(" · ");
    return el("tr", { "data-service": name }, el("td", {}, name),
      el("td", {}, `${(100 * s.objective).toFixed(2)} %`),
      el("td", { class: left < 0 ? "bad" : left < 0.5 ? "warn" : "" },
         left < 0 ? `▲ overspent by ${pct(-left)}` : left < 0.5 ? `◐ ${pct(left)} (low)`
           : pct(left)),
      el("td", { class: "wrap" }, burns || "—"),
      el("td", { class: s.alerts.length ? "bad wrap" : "dim" }, s.alerts.length
        ? s.alerts.map((a) => `[${a.severity}] ${a.describe}`).join("; ") : "none"));
  }));
  if (!names.length) tbody.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "dim" },
    "no service has traffic in its metric stream yet")));
}

function renderResources(data) {
  const tbody = document.querySelector("#resources tbody");
  const used = (mb, limit) => {
    const share = limit ? mb / limit : null;
    const mark = share >= 0.9 ? "▲ " : share >= 0.75 ? "◐ " : "";
    return el("td", { class: share >= 0.9 ? "bad" : share >= 0.75 ? "warn" : "" },
      limit ? `${mark}${Math.round(mb)} / ${Math.round(limit)} MiB (${Math.round(100 * share)} %)`
        : `${Math.round(mb)} MiB (no limit)`);
  };
  // Ray's own actors have long generated names: shortened, the whole name on hover
  const name = (t) => el("td", { title: t }, t.length > 40 ? `${t.slice(0, 28)}…${t.slice(-8)}` : t);
  const rows = [
    ...Object.entries(data.replicas).sort().map(([target, r]) => el("tr", {},
      name(target), el("td", {}, r.service), used(r.rss_mb, r.limit_mb),
      el("td", {}, `${Math.round(r.cpu_percent)} %`))),
    ...Object.entries(data.actors || {}).sort().map(([target, a]) => el("tr", { class: "dim" },
      name(target), el("td", {}, "selfheal"), used(a.rss_mb, null),
      el("td", {}, `${Math.round(a.cpu_percent)} %`)))];
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 4,
    class: "dim" }, "no reading yet"))]));
  const alerts = (data.alerts || []).slice(-5).reverse();
  document.querySelector("#resources .memory-alerts").replaceChildren(...alerts.map((a) =>
    el("li", { class: "bad" }, `▲ ${clock(a.at)} ${a.detail}`)));
}

function health(calls, errors) {
  if (!calls) return "none";
  const r = errors / calls;
  return r >= 0.2 ? "unhealthy" : r >= 0.02 ? "degraded" : "ok";
}

function renderServices(data) {
  state.series = data;
  const grid = document.getElementById("heatmap");
  const impact = document.querySelector("#impact tbody");
  const names = Object.keys(data.services);
  grid.replaceChildren(...names.flatMap((name) => {
    const s = data.services[name];
    const cells = s.calls.map((c, i) => {
      const h = health(c, s.errors[i]);
      const mark = { ok: "", degraded: "·", unhealthy: "×", none: "" }[h];
      return el("span", { class: `cell h-${h}`, title:
        `${clock(data.since + i * data.step_s)}: ${h}, ${Math.round(c)} calls, ${s.errors[i]} errors` },
        mark);
    });
    return [el("button", { type: "button", "data-service": name,
      onclick: () => { state.drill = name; renderDrill(); } }, name),
      el("div", { class: "row" }, cells)];
  }));
  if (!names.length) grid.replaceChildren(el("span", { class: "dim" }, "no metric streams yet"));
  impact.replaceChildren(...names.map((name) => {
    const s = data.services[name];
    const tiers = Object.entries(s.answered).filter(([k]) => k !== "primary");
    return el("tr", {}, el("td", {}, name),
      el("td", {}, `${s.primary_estimated ? "≈" : ""}${Math.round(s.answered.primary)}`),
      el("td", {}, tiers.length ? tiers.map(([k, v]) =>
        `${k}: ${v}${k.startsWith("cached") ? " (with staleness warning)" : ""}`).join(", ") : "—"),
      el("td", { class: s.failed_explicitly ? "bad" : "" }, s.failed_explicitly));
  }));
  renderDrill();
}

function chart(title, values, unit) {
  const w = 260, h = 70, pad = 4;
  const xs = values.map((v, i) => [i, v]).filter(([, v]) => v !== null);
  const max = Math.max(1e-9, ...xs.map(([, v]) => v));
  const pts = xs.map(([i, v]) => `${pad + (i / Math.max(1, values.length - 1)) * (w - 2 * pad)},${
    h - pad - (v / max) * (h - 2 * pad)}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title}, peak ${max.toFixed(2)} ${unit}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts); line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#58a6ff"); line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return el("figure", { style: "display:inline-block;margin:0 .5em .5em 0" }, svg,
    el("figcaption", { class: "dim" }, `${title} (peak ${max.toFixed(2)} ${unit})`));
}

function renderDrill() {
  const box = document.getElementById("drill");
  const s = state.drill && state.series && state.series.services[state.drill];
  if (!s) { box.replaceChildren(); return; }
  const rate = s.calls.map((c, i) => (c ? (100 * s.errors[i]) / c : null));
  box.replaceChildren(el("h3", {}, state.drill),
    chart("error rate", rate, "%"), chart("p95 latency", s.p95_ms, "ms"),
    chart("throughput", s.calls.map((c) => c / (state.series.step_s / 60)), "calls/min"),
    chart("errors", s.errors, "per step"));
}

// -- polling ----------------------------------------------------------------------------

async function fast() {
  try {
    const [healthData, runs, alerts] = await Promise.all([
      api("/api/v1/health?hours=1&limit=20"), api("/api/v1/recovery/runs"),
      api("/api/v1/alerts?active=true")]);
    renderCircuits(healthData.circuits); renderRuns(runs); renderAlerts(alerts);
    state.lastOk = Date.now(); state.failing = false;
  } catch (e) { state.failing = true; if (e.message !== "401") showError(`update failed: ${e.message}`); }
  setStatus();
}

async function slow() {
  try {
    const [services, patterns, slo, resources] = await Promise.all([
      api("/api/v1/services?minutes=60"), api("/api/v1/patterns"), api("/api/v1/slo"),
      api("/api/v1/resources")]);
    renderServices(services); renderPatterns(patterns); renderSlo(slo);
    renderResources(resources);
  } catch (e) { if (e.message !== "401") showError(`update failed: ${e.message}`); }
}

async function signIn(token) {
  state.token = token;
  try {
    const me = await api("/api/v1/whoami");
    state.role = me.role;
    sessionStorage.setItem("selfheal-token", token);
    document.getElementById("who").textContent = `${me.name} (${me.role})`;
    document.getElementById("signin").hidden = true;
    document.getElementById("signout").hidden = false;
    document.getElementById("main").hidden = false;
    document.body.dataset.role = me.role;
    showError("");
    await Promise.all([fast(), slow()]);
    state.timers = [setInterval(fast, FAST_MS), setInterval(slow, SLOW_MS),
                    setInterval(setStatus, 1000)];
  } catch (e) {
    if (e.message !== "401") showError(`sign-in failed: ${e.message}`);
  }
}

function signOut(reason) {
  state.timers.forEach(clearInterval); state.timers = [];
  state.token = null; state.role = null;
  sessionStorage.removeItem("selfheal-token");
  document.getElementById("signin").hidden = false;
  document.getElementById("signout").hidden = true;
  document.getElementById("main").hidden = true;
  document.getElementById("who").textContent = "";
  showError(reason || ""); setStatus();
}

document.getElementById("signin").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn(document.getElementById("token").value.trim());
});
document.getElementById("signout").addEventListener("click", () => signOut(""));
if (state.token) signIn(state.token); else setStatus();
