// The dashboard: one page per hash route (#/overview, #/queues, #/queue/NAME, #/job/ID,
// #/workers, #/dead, #/periodic, #/limits), each re-read every REFRESH_MS while it is shown.
// Reads and actions go through the HTTP API (api.js); nothing is loaded from elsewhere.
import { api, ApiError, q, setToken } from "./api.js";
import { drawChart } from "./charts.js";

const REFRESH_MS = 5000;
const PAGE_SIZE = 50;
const page = document.getElementById("page");
const state = { readOnly: false, timer: null, epoch: 0, chartQueue: "" };

// A read that finishes after the page changed must not draw over the new page: show() moves
// the epoch on, and such a read throws Stale, which render() drops silently.
class Stale extends Error {}
async function read(path) {
  const epoch = state.epoch;
  const answer = await api("GET", path);
  if (epoch !== state.epoch) throw new Stale();
  return answer;
}

// -- small helpers ------------------------------------------------------------------------
function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
function num(value, digits = 0) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
}
function when(epoch) {
  return epoch ? new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "-";
}
function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
function action(label, attrs, danger = false) {
  if (state.readOnly) return "";
  return `<button ${attrs}${danger ? ' class="danger"' : ""}>${label}</button>`;
}
function notice(message) {
  const box = document.getElementById("notice");
  box.hidden = !message;
  box.innerHTML = message || "";
}
function tokenForm(message) {
  notice(`${esc(message)} <input id="token" type="password" placeholder="bearer token">
    <button id="token-save">Use token</button>`);
  document.getElementById("token-save").onclick = async () => {
    setToken(document.getElementById("token").value);
    notice("");
    if (await loadMode()) await show();
  };
}
async function act(work) {
  try {
    await work();
    notice("");
  } catch (error) {
    notice(esc(error.message));
  }
  await refresh();
}

// -- overview -----------------------------------------------------------------------------
const CHARTS = [
  ["throughput", "Throughput (jobs/s)"],
  ["backlog", "Backlog (jobs)"],
  ["latency", "Enqueue-to-start of jobs started, every queue (s)"],
  ["waiting", "Oldest waiting job's age (s)"],
];

function overviewLayout() {
  const charts = ["hour", "day"]
    .map((range) => CHARTS.map(([kind, title]) => `<div class="chart"><h3>${title}, last ${range}</h3>
      <div id="chart-${range}-${kind}" data-chart="${range}-${kind}"></div></div>`).join(""))
    .join("");
  return `<h2>Queues</h2><div id="queues-table"></div>
    <div class="toolbar"><h2>History</h2><label>queue <select id="chart-queue"></select></label>
    <span class="muted">sampled by conveyor serve every few seconds into per-minute and
    per-quarter-hour buckets kept in the backend</span></div>
    <div class="charts">${charts}</div>`;
}

function queueRows(queues) {
  const rows = queues.map((r) => `<tr data-queue="${esc(r.name)}">
    <td><a href="#/queue/${q(r.name)}">${esc(r.name)}</a></td>
    <td class="num">${r.waiting}</td><td class="num">${r.delayed}</td>
    <td class="num">${r.in_flight}</td><td class="num">${r.dead}</td>
    <td class="num">${num(r.jobs_per_s, 1)}</td><td class="num">${age(r.oldest_waiting_s)}</td>
    <td>${r.paused ? '<span class="paused">paused</span>' : "running"}</td>
    <td>${r.paused ? action("Resume", `data-resume="${esc(r.name)}"`) : action("Pause", `data-pause="${esc(r.name)}"`)}</td></tr>`);
  return `<table><thead><tr><th>queue</th><th class="num">waiting</th><th class="num">delayed</th>
    <th class="num">in flight</th><th class="num">dead</th><th class="num">jobs/s</th>
    <th class="num">oldest waiting</th><th>state</th><th></th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="9" class="muted">no queue yet</td></tr>'}</tbody></table>`;
}

function bindQueueActions(root) {
  root.querySelectorAll("[data-pause]").forEach((b) => {
    b.onclick = () => act(() => api("PUT", `/v1/queues/${q(b.dataset.pause)}/pause`));
  });
  root.querySelectorAll("[data-resume]").forEach((b) => {
    b.onclick = () => act(() => api("DELETE", `/v1/queues/${q(b.dataset.resume)}/pause`));
  });
}

async function overview(first) {
  if (first) page.innerHTML = overviewLayout();
  const suffix = state.chartQueue ? `?queue=${q(state.chartQueue)}` : "";
  const data = await read(`/v1/dashboard${suffix}`);
  const table = document.getElementById("queues-table");
  table.innerHTML = queueRows(data.fleet.queues);
  bindQueueActions(table);
  const select = document.getElementById("chart-queue");
  const names = data.fleet.queues.map((r) => r.name);
  select.innerHTML = ["", ...names]
    .map((n) => `<option value="${esc(n)}"${n === state.chartQueue ? " selected" : ""}>${n ? esc(n) : "all queues"}</option>`)
    .join("");
  select.onchange = () => {
    state.chartQueue = select.value;
    refresh();
  };
  for (const range of ["hour", "day"]) {
    for (const [kind] of CHARTS) {
      drawChart(document.getElementById(`chart-${range}-${kind}`), `${range}-${kind}`, kind, data.charts[range]);
    }
  }
}

// -- queues and jobs ----------------------------------------------------------------------
async function queues(first) {
  const data = await read("/v1/dashboard");
  page.innerHTML = `<h2>Queues</h2>${queueRows(data.fleet.queues)}
    <h2>Find a job</h2><div class="toolbar"><input id="job-id" placeholder="job id">
    <button id="job-go">Show</button></div>`;
  bindQueueActions(page);
  document.getElementById("job-go").onclick = () => {
    location.hash = `#/job/${q(document.getElementById("job-id").value.trim())}`;
  };
}

async function queueDetail(first, name) {
  if (first) state.queueState = "waiting";
  const counts = await read(`/v1/queues/${q(name)}`);
  const rows = ["waiting", "delayed", "in_flight", "done", "dead"]
    .map((k) => `<dt>${k.replace("_", " ")}</dt><dd>${counts[k]}</dd>`).join("");
  const tabs = ["waiting", "delayed", "dead"]
    .map((s) => `<button data-state="${s}"${s === state.queueState ? ' class="active"' : ""}>${s}</button>`).join(" ");
  const holder = '<div id="jobs"></div>';
  page.innerHTML = `<h2>Queue ${esc(name)}</h2><dl class="detail">${rows}</dl>
    <div class="toolbar"><h2>Jobs</h2>${tabs}</div>${holder}`;
  page.querySelectorAll("[data-state]").forEach((b) => {
    b.onclick = () => { state.queueState = b.dataset.state; state.pageNo = 0; refresh(); };
  });
  const root = document.getElementById("jobs");
  if (state.queueState === "dead") await letters(root, name, "", state.pageNo || 0);
  else await jobsPage(root, name, state.queueState, state.pageNo || 0);
}

async function jobsPage(root, queue, which, pageNo) {
  const data = await read(`/v1/queues/${q(queue)}/jobs?state=${which}&offset=${pageNo * PAGE_SIZE}&limit=${PAGE_SIZE}`);
  const rows = data.jobs.map((j) => `<tr data-job="${esc(j.job_id)}">
    <td><a href="#/job/${q(j.job_id)}">${esc(j.job_id)}</a></td><td>${esc(j.job ?? "?")}</td>
    <td><code>${esc(JSON.stringify(j.args))}</code></td><td class="num">${j.attempt ?? "-"}</td>
    <td>${when(j.enqueued_at)}</td><td>${which === "delayed" ? when(j.due_at) : age(j.enqueued_at ? Date.now() / 1000 - j.enqueued_at : null)}</td>
    <td>${action("Cancel", `data-cancel="${esc(j.job_id)}"`, true)}</td></tr>`);
  const more = (pageNo + 1) * PAGE_SIZE < data.total;
  root.innerHTML = `<div class="toolbar"><span class="muted">${data.total} ${which}; ${data.offset + 1}-${data.offset + data.jobs.length} shown</span>
    ${pageNo > 0 ? '<button id="prev">Previous</button>' : ""}${more ? '<button id="next">Next</button>' : ""}</div>
    <table><thead><tr><th>job id</th><th>job</th><th>arguments</th><th class="num">attempt</th>
    <th>enqueued</th><th>${which === "delayed" ? "due" : "waiting for"}</th><th></th></tr></thead>
    <tbody>${rows.join("") || `<tr><td colspan="7" class="muted">no ${which} job</td></tr>`}</tbody></table>`;
  root.querySelectorAll("[data-cancel]").forEach((b) => {
    b.onclick = () => act(() => api("DELETE", `/v1/jobs/${q(b.dataset.cancel)}`));
  });
  const step = (by) => () => { state.pageNo = pageNo + by; refresh(); };
  if (root.querySelector("#prev")) root.querySelector("#prev").onclick = step(-1);
  if (root.querySelector("#next")) root.querySelector("#next").onclick = step(1);
}

async function job(first, id) {
  const found = await read(`/v1/jobs/${q(id)}`);
  const waiting = ["queued", "scheduled", "failed"].includes(found.status);
  page.innerHTML = `<h2>Job ${esc(id)}</h2><dl class="detail">
    <dt>status</dt><dd data-status>${esc(found.status)}</dd>
    <dt>attempts</dt><dd>${found.attempts}</dd>
    <dt>result</dt><dd><pre>${esc(JSON.stringify(found.result, null, 2))}</pre></dd>
    <dt>error</dt><dd>${found.error ? `<pre>${esc(found.error)}</pre>` : "-"}</dd></dl>
    <div class="toolbar">${waiting ? action("Cancel", 'id="cancel-job"', true) : ""}</div>`;
  const cancel = document.getElementById("cancel-job");
  if (cancel) cancel.onclick = () => act(() => api("DELETE", `/v1/jobs/${q(id)}`));
}

// -- dead letters -------------------------------------------------------------------------
async function letters(root, queue, jobName, pageNo) {
  const data = await read(`/v1/queues/${q(queue)}/dead-letters?limit=${(pageNo + 1) * PAGE_SIZE}`);
  const matching = data.dead_letters.filter((l) => !jobName || l.job === jobName);
  const shown = matching.slice(pageNo * PAGE_SIZE, (pageNo + 1) * PAGE_SIZE);
  const rows = shown.map((l) => `<tr data-letter="${esc(l.job_id)}">
    <td><a href="#/job/${q(l.job_id)}">${esc(l.job_id)}</a></td><td>${esc(l.job)}</td>
    <td><code>${esc(JSON.stringify(l.args))}</code></td><td>${when(l.failed_at)}</td>
    <td><details><summary>${esc(l.reason.split("\n").filter(Boolean).pop() || "")}</summary>
    <pre>${esc(l.reason)}</pre></details></td>
    <td>${action("Requeue", `data-requeue="${esc(l.job_id)}"`)} ${action("Delete", `data-delete="${esc(l.job_id)}"`, true)}</td></tr>`);
  const more = data.dead_letters.length === (pageNo + 1) * PAGE_SIZE;
  root.innerHTML = `<div class="toolbar"><span class="muted">${matching.length} shown of the newest
    ${data.dead_letters.length}</span>
    ${pageNo > 0 ? '<button id="prev">Newer</button>' : ""}${more ? '<button id="next">Older</button>' : ""}
    ${shown.length ? action("Requeue these", 'id="requeue-all"') : ""}</div>
    <table><thead><tr><th>job id</th><th>job</th><th>arguments</th><th>failed</th><th>error</th><th></th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="6" class="muted">no dead letters</td></tr>'}</tbody></table>`;
  const ids = shown.map((l) => l.job_id);
  const requeue = (list) => act(() => api("POST", `/v1/queues/${q(queue)}/dead-letters/requeue`, { job_ids: list }));
  root.querySelectorAll("[data-requeue]").forEach((b) => { b.onclick = () => requeue([b.dataset.requeue]); });
  root.querySelectorAll("[data-delete]").forEach((b) => {
    b.onclick = () => act(() => api("DELETE", `/v1/queues/${q(queue)}/dead-letters/${q(b.dataset.delete)}`));
  });
  const all = root.querySelector("#requeue-all");
  if (all) all.onclick = () => requeue(ids);
  const step = (by) => () => { state.pageNo = pageNo + by; refresh(); };
  if (root.querySelector("#prev")) root.querySelector("#prev").onclick = step(-1);
  if (root.querySelector("#next")) root.querySelector("#next").onclick = step(1);
}

async function dead(first) {
  if (first) {
    const data = await read("/v1/queues");
    const names = data.queues.map((r) => r.name);
    state.deadQueue = state.deadQueue || names[0] || "";
    page.innerHTML = `<h2>Dead letters</h2><div class="toolbar">
      <label>queue <select id="dead-queue">${names.map((n) => `<option${n === state.deadQueue ? " selected" : ""}>${esc(n)}</option>`).join("")}</select></label>
      <label>job <input id="dead-job" placeholder="any job name"></label></div><div id="letters"></div>`;
    document.getElementById("dead-queue").onchange = (e) => { state.deadQueue = e.target.value; state.pageNo = 0; refresh(); };
    document.getElementById("dead-job").onchange = (e) => { state.deadJob = e.target.value.trim(); state.pageNo = 0; refresh(); };
  }
  if (!state.deadQueue) return;
  await letters(document.getElementById("letters"), state.deadQueue, state.deadJob || "", state.pageNo || 0);
}

// -- workers and groups -------------------------------------------------------------------
async function workers(first) {
  const data = await read("/v1/fleet");
  const groups = data.groups.map((g) => `<tr data-group="${esc(g.name)}"><td>${esc(g.name)}</td>
    <td class="num" data-desired>${g.desired ?? "-"}</td><td class="num">${g.alive}</td>
    <td>${g.autoscale ? `auto ${g.autoscale.minimum}-${g.autoscale.maximum}, ${g.autoscale.backlog_per_worker} jobs/worker` : "manual"}</td>
    <td>${esc(g.reason)} <span class="muted">${esc(g.set_by)} ${when(g.set_at)}</span></td>
    <td>${state.readOnly ? "" : `<input type="number" min="0" value="${g.desired ?? g.alive}" data-processes>
      ${action("Scale", "data-scale")}
      <input type="number" min="0" placeholder="min" data-min> <input type="number" min="1" placeholder="max" data-max>
      <input type="number" min="1" placeholder="jobs/worker" data-per> ${action("Autoscale", "data-auto")}`}</td></tr>`);
  const sups = data.supervisors.map((s) => `<tr><td>${esc(s.id)}</td><td>${esc(s.group)}</td>
    <td>${esc(s.host)}:${s.pid}</td><td>${esc(s.pool)}</td><td>${esc(s.queues.join(", "))}</td>
    <td class="num">${s.processes_desired}</td><td class="num">${s.processes_alive}</td>
    <td class="num">${s.jobs_running}</td><td class="num">${s.jobs_done}</td><td>${when(s.last_beat)}</td>
    <td>${s.lost ? `<span class="lost">${esc(s.note)}</span>` : "live"}</td></tr>`);
  page.innerHTML = `<h2>Groups</h2><table><thead><tr><th>group</th><th class="num">desired</th>
    <th class="num">alive</th><th>scaling</th><th>last decision</th><th></th></tr></thead>
    <tbody>${groups.join("") || '<tr><td colspan="6" class="muted">no group</td></tr>'}</tbody></table>
    <h2>Supervisors</h2><table><thead><tr><th>id</th><th>group</th><th>host:pid</th><th>pool</th>
    <th>queues</th><th class="num">desired</th><th class="num">alive</th><th class="num">running</th>
    <th class="num">done</th><th>last beat</th><th>state</th></tr></thead>
    <tbody>${sups.join("") || '<tr><td colspan="11" class="muted">no supervisor</td></tr>'}</tbody></table>`;
  page.querySelectorAll("tr[data-group]").forEach((row) => {
    const group = row.dataset.group;
    const value = (sel) => Number(row.querySelector(sel).value);
    const scale = row.querySelector("[data-scale]");
    if (scale) scale.onclick = () => act(() => api("PUT", `/v1/groups/${q(group)}`, { processes: value("[data-processes]") }));
    const auto = row.querySelector("[data-auto]");
    if (auto) auto.onclick = () => act(() => {
      const bounds = { minimum: value("[data-min]"), maximum: value("[data-max]"), backlog_per_worker: value("[data-per]") };
      const processes = Math.min(bounds.maximum, Math.max(bounds.minimum, value("[data-processes]")));
      return api("PUT", `/v1/groups/${q(group)}`, { processes, autoscale: bounds });
    });
  });
}

// -- periodic jobs and limits -------------------------------------------------------------
function withoutRegistry(data) {
  return data.registry ? "" : '<p class="muted">conveyor serve was started without --jobs: no registry to read.</p>';
}

async function periodic(first) {
  const data = await read("/v1/dashboard/periodics");
  const rows = data.periodics.map((p) => `<tr><td>${esc(p.name)}</td><td>${esc(p.job)}</td>
    <td><code>${esc(p.schedule)}</code></td><td>${esc(p.queue)}</td><td>${esc(p.missed)}</td>
    <td>${when(p.last_run)}</td><td>${when(p.next_run)}</td></tr>`);
  page.innerHTML = `<h2>Periodic jobs</h2>${withoutRegistry(data)}<table><thead><tr><th>name</th><th>job</th>
    <th>schedule</th><th>queue</th><th>missed</th><th>last run</th><th>next run</th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="7" class="muted">none</td></tr>'}</tbody></table>
    <p class="muted">leader: ${esc(data.leader || "none (no scheduler runs)")}</p>`;
}

async function limits(first) {
  const data = await read("/v1/dashboard/limits");
  const rows = data.limits.map((l) => `<tr data-limit="${esc(l.key)}"><td>${esc(l.kind)}</td><td>${esc(l.key)}</td>
    <td>${l.kind === "concurrency" ? `${l.permits} at once` : `${l.count} per ${l.period_s} s`}</td>
    <td class="num" data-held>${l.kind === "concurrency" ? `${l.held ?? "-"} / ${l.permits}` : "-"}</td>
    <td class="num">${l.parked ?? "-"}</td><td>${esc(l.jobs.join(", "))}</td></tr>`);
  page.innerHTML = `<h2>Limits</h2>${withoutRegistry(data)}<table><thead><tr><th>kind</th><th>key</th>
    <th>limit</th><th class="num">permits held</th><th class="num">jobs parked</th><th>jobs</th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="6" class="muted">none</td></tr>'}</tbody></table>`;
}

// -- routing and refresh ------------------------------------------------------------------
const ROUTES = { overview, queues, queue: queueDetail, job, workers, dead, periodic, limits };

async function render(first) {
  const [name, arg] = (location.hash.replace(/^#\//, "") || "overview").split("/");
  const view = ROUTES[name] || overview;
  document.querySelectorAll("nav a").forEach((a) => {
    a.classList.toggle("active", a.getAttribute("href") === `#/${name}`);
  });
  try {
    await view(first, arg === undefined ? undefined : decodeURIComponent(arg));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    page.dataset.route = name;
    page.dataset.ready = "1";
  } catch (error) {
    if (error instanceof Stale) return;
    if (error instanceof ApiError && error.status === 401) tokenForm(error.message);
    else notice(esc(error.message));
  }
}

// The timer does not redraw a page while someone types in it (it would wipe the input).
function editing() {
  const active = document.activeElement;
  return Boolean(active && page.contains(active) && ["INPUT", "SELECT"].includes(active.tagName));
}

async function refresh() {
  await render(false);
}

async function show() {
  clearInterval(state.timer);
  state.epoch += 1;
  page.dataset.ready = "";
  state.pageNo = 0;
  await render(true);
  state.timer = setInterval(() => { if (!editing()) refresh(); }, REFRESH_MS);
}

// Whether the service is read-only (no buttons then); false until the token is accepted.
async function loadMode() {
  try {
    state.readOnly = (await api("GET", "/v1/dashboard")).read_only;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) tokenForm(error.message);
    else notice(esc(error.message));
    return false;
  }
  document.getElementById("mode").textContent = state.readOnly ? "read-only" : "";
  return true;
}

async function start() {
  window.addEventListener("hashchange", show);
  if (await loadMode()) await show();
}

start();
