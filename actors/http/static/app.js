// corral's dashboard: reads the JSON API (/api/...), stays current from the scheduler's
// event stream (/api/events, server-sent events), acts by POST after a confirmation.
// No framework, no build step; user data is only ever set as text, never as HTML.
"use strict";

const STATES = ["PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "UPSTREAM_FAILED"];
const LIVE = new Set(["PENDING", "QUEUED", "RUNNING"]);
const SVG = "http://www.w3.org/2000/svg";

// ---------------------------------------------------------------- small helpers

function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function when(t) { return t ? new Date(t * 1000).toLocaleString() : "—"; }
function ago(seconds) {
  if (seconds < 1) return "now";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}
function waited(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} days`;
}
function state(s) { return h("span", { class: `state s-${s}` }, s); }
function jobLink(id) { return h("a", { href: `/jobs/${id}` }, `#${id}`); }
function bar(fraction) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  return h("span", { class: "bar", title: `${pct.toFixed(0)}%` }, h("span", { style: `width:${pct}%` }));
}
function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty || "None.");
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map(([label, cls]) => h("th", { class: cls }, label)))),
    h("tbody", {}, rows)));
}

function flash(text, bad) {
  const el = document.getElementById("flash");
  el.textContent = text;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

async function get(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const text = await r.text();
  if (!r.ok) throw new Error(text.trim() || `${r.status}`);
  return JSON.parse(text);
}

// An action: asks first, then POSTs with the header other sites cannot send.
async function act(path, question) {
  if (!window.confirm(question)) return null;
  const r = await fetch(path, { method: "POST", headers: { "X-Corral-Action": "1" } });
  const text = await r.text();
  if (!r.ok) { flash(text.trim() || `${r.status}`, true); return null; }
  return JSON.parse(text);
}

// At most one call of fn per `ms`, the last request always served (no polling storm:
// a burst of a thousand events costs one refresh).
function throttle(fn, ms) {
  let last = 0, timer = null;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(async () => {
      timer = null; last = Date.now();
      try { await fn(); } catch (e) { flash(e.message, true); }
    }, wait);
  };
}

function show(...nodes) {
  const main = document.getElementById("page");
  main.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
}

// A list page: its heading and forms once, then only its results again (a live refresh
// must not wipe what someone is typing).
function showResults(top, ...results) {
  if (!document.getElementById("results")) show(...top(), h("div", { id: "results" }));
  document.getElementById("results").replaceChildren(...results.flat(Infinity).filter((n) => n));
}

// ---------------------------------------------------------------- pages

const pages = {};

let chart = null, chartAt = 0;  // the chart changes by the minute: read at most every 15 s
pages.overview = async () => {
  const due = Date.now() - chartAt > 15000;
  const [status, minutes] = await Promise.all([get("/api/status"), due ? get("/api/throughput") : chart]);
  if (due) { chart = minutes; chartAt = Date.now(); }
  const health = {};
  for (const w of status.workers) health[w.state] = (health[w.state] || 0) + 1;
  const slots = status.workers.reduce((n, w) => n + w.slots, 0);
  const used = status.workers.reduce((n, w) => n + w.running, 0);
  show(
    h("h1", {}, "Overview"),
    status.cluster ? h("p", { class: "muted" }, `Leader ${status.cluster.leader}, term ${status.cluster.term}`) : null,
    h("h2", {}, "Jobs by state"),
    h("div", { class: "cards", id: "counts" }, STATES.map((s) =>
      h("a", { class: "card", href: `/jobs?state=${s}`, "data-state": s, style: "text-decoration:none;color:inherit" },
        h("div", { class: `n s-${s}` }, (status.jobs[s] || 0).toLocaleString()), h("div", { class: "k" }, s)))),
    h("h2", {}, "Throughput, last hour"),
    throughputChart(chart.minutes),
    h("p", { class: "muted" }, `${status.throughput_per_s} succeeded/s over the last minute; ${status.completed_last_minute} ended in it.`),
    h("div", { class: "cards" },
      h("a", { class: "card", href: "/dead-letters", style: "text-decoration:none;color:inherit" },
        h("div", { class: "n s-FAILED", id: "dead-letters" }, status.dead_letters.toLocaleString()), h("div", { class: "k" }, "dead letters")),
      h("a", { class: "card", href: "/workers", style: "text-decoration:none;color:inherit" },
        h("div", { class: "n" }, `${used}/${slots}`), h("div", { class: "k" }, "slots busy")),
      ["alive", "suspect", "dead"].map((s) =>
        h("a", { class: "card", href: "/workers", style: "text-decoration:none;color:inherit" },
          h("div", { class: `n s-${s}` }, health[s] || 0), h("div", { class: "k" }, `workers ${s}`)))),
  );
};
pages.overview.live = { ms: 1000 };

function throughputChart(minutes) {
  const W = 600, H = 120, pad = 18, n = minutes.length || 1;
  const top = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed));
  const bw = (W - pad) / n;
  const svg = h("svg:svg", { class: "chart", viewBox: `0 0 ${W} ${H + pad}`, role: "img",
    "aria-label": "jobs ended per minute over the last hour" });
  svg.append(h("svg:line", { class: "axis", x1: pad, y1: H, x2: W, y2: H }));
  svg.append(h("svg:text", { x: 0, y: 10 }, String(top)));
  minutes.forEach((m, i) => {
    const x = pad + i * bw;
    const ok = (m.succeeded / top) * (H - 4), bad = (m.failed / top) * (H - 4);
    const title = `${new Date(m.minute * 1000).toLocaleTimeString()}: ${m.succeeded} succeeded, ${m.failed} failed or cancelled`;
    const g = h("svg:g", {}, h("svg:title", {}, title));
    if (ok) g.append(h("svg:rect", { class: "ok", x, y: H - ok, width: Math.max(1, bw - 1), height: ok }));
    if (bad) g.append(h("svg:rect", { class: "bad", x, y: H - ok - bad, width: Math.max(1, bw - 1), height: bad }));
    svg.append(g);
  });
  svg.append(h("svg:text", { x: pad, y: H + pad - 4 }, "−60 min"), h("svg:text", { x: W - 30, y: H + pad - 4 }, "now"));
  return svg;
}

pages.queues = async () => {
  const status = await get("/api/status");
  const rows = Object.entries(status.queues).map(([name, q]) => h("tr", {},
    h("td", {}, h("a", { href: `/jobs?state=QUEUED&queue=${encodeURIComponent(name)}` }, name)),
    h("td", { class: "num" }, q.ready), h("td", { class: "num" }, q.high), h("td", { class: "num" }, q.normal),
    h("td", { class: "num" }, q.low), h("td", { class: "num" }, q.waiting_for_worker),
    h("td", { "data-oldest": name }, q.oldest_job ? [jobLink(q.oldest_job), ` ${waited(q.oldest_s)}`] : "—")));
  show(
    h("h1", {}, "Queues"),
    table([["queue"], ["ready", "num"], ["high", "num"], ["normal", "num"], ["low", "num"], ["no worker for its task", "num"], ["oldest waiting"]], rows, "No job is ready."),
    h("h2", {}, "Concurrency keys at their limit"),
    table([["key"], ["running", "num"], ["max", "num"], ["waiting", "num"]],
      status.keys.map((k) => h("tr", {}, h("td", {}, k.key), h("td", { class: "num" }, k.running),
        h("td", { class: "num" }, k.max_concurrent), h("td", { class: "num" }, k.waiting))), "None."),
  );
};
pages.queues.live = { ms: 1000 };

pages.workers = async () => {
  const status = await get("/api/status");
  const rows = status.workers.map((w) => h("tr", { "data-worker": w.name },
    h("td", {}, w.name), h("td", {}, state(w.state)),
    h("td", {}, bar(w.running / Math.max(1, w.slots)), ` ${w.running}/${w.slots}`,
      w.prefetch ? ` (${w.prefetch} prefetch)` : ""),
    h("td", { class: "hide-narrow" }, w.queues.join(", ")),
    h("td", {}, ago(w.last_seen_s)),
    h("td", {}, w.jobs.map((j) => h("div", {}, jobLink(j.job_id), " ", bar(j.progress),
      j.progress === null ? "" : ` ${Math.round(j.progress * 100)}%`, j.message ? ` ${j.message}` : "")))));
  show(h("h1", {}, "Workers"),
    table([["worker"], ["health"], ["slots"], ["queues", "hide-narrow"], ["heartbeat"], ["running"]], rows, "No worker is connected."));
};
pages.workers.live = { ms: 1000 };

function jobRows(jobs, actions) {
  return jobs.map((j) => h("tr", { "data-job-id": j.job_id },
    h("td", {}, jobLink(j.job_id)), h("td", {}, state(j.status)), h("td", {}, j.task),
    h("td", { class: "hide-narrow" }, j.queue), h("td", { class: "num" }, j.attempts),
    h("td", { class: "hide-narrow" }, when(j.finished_at || j.started_at || j.created_at)),
    actions ? h("td", {}, actions(j)) : null));
}

function pager(next) {
  const params = new URLSearchParams(location.search);
  const nodes = [];
  if (params.get("before")) {
    const first = new URLSearchParams(params); first.delete("before");
    nodes.push(h("a", { href: `?${first}` }, "« Newest"));
  }
  if (next) { params.set("before", next); nodes.push(h("a", { href: `?${params}`, rel: "next" }, "Older »")); }
  return h("div", { class: "pager" }, nodes);
}

// A time the page's form holds ("2024-05-01T12:30", the browser's own time zone) as
// the API takes it (Unix seconds); "" if empty or not a time.
function unixTime(local) {
  const t = local ? new Date(local).getTime() : NaN;
  return Number.isFinite(t) ? String(t / 1000) : "";
}

// Search: a job id opens that job; anything else (or an id no job has) is looked up as
// an idempotency key.
async function search(text) {
  if (/^\d{1,19}$/.test(text)) {
    const r = await fetch(`/api/jobs/${text}`, { headers: { Accept: "application/json" } });
    if (r.ok) { location.href = `/jobs/${text}`; return; }
  }
  const found = await get(`/api/jobs?${new URLSearchParams({ key: text })}`);
  if (found.jobs.length) location.href = `/jobs/${found.jobs[0].job_id}`;
  else flash(`No job has the id or idempotency key ${JSON.stringify(text)}.`, true);
}

pages.jobs = async () => {
  const params = new URLSearchParams(location.search);
  const query = new URLSearchParams();
  for (const k of ["state", "queue", "task", "before"]) if (params.get(k)) query.set(k, params.get(k));
  for (const k of ["created_after", "created_before"]) if (unixTime(params.get(k))) query.set(k, unixTime(params.get(k)));
  const page = await get(`/api/jobs?${query}`);
  const select = h("select", { name: "state" }, h("option", { value: "" }, "any"),
    STATES.map((s) => h("option", { value: s, selected: params.get("state") === s }, s)));
  const find = h("form", { class: "filters", id: "search", onsubmit: async (e) => {
    e.preventDefault();
    const text = e.target.elements.q.value.trim();
    if (text) { try { await search(text); } catch (err) { flash(err.message, true); } }
  } }, h("label", {}, "id or idempotency key", h("input", { name: "q", size: 18, maxlength: 512 })), h("button", {}, "Find"));
  const time = (name, label) => h("label", {}, label,
    h("input", { type: "datetime-local", name, step: 1, value: params.get(name) || "" }));
  showResults(() => [
    h("h1", {}, "Jobs"),
    h("form", { class: "filters", id: "filters", method: "get" },
      h("label", {}, "state", select),
      h("label", {}, "queue", h("input", { name: "queue", value: params.get("queue") || "", size: 12, maxlength: 64 })),
      h("label", {}, "task", h("input", { name: "task", value: params.get("task") || "", size: 16, maxlength: 256 })),
      time("created_after", "created after"), time("created_before", "before"),
      h("button", {}, "Filter")),
    find],
    table([["id"], ["state"], ["task"], ["queue", "hide-narrow"], ["attempts", "num"], ["time", "hide-narrow"]],
      jobRows(page.jobs), "No job matches."),
    pager(page.next),
  );
};
pages.jobs.live = { ms: 2000, jobs: true };

pages.deadLetters = async () => {
  const params = new URLSearchParams(location.search);
  const query = new URLSearchParams({ state: "FAILED" });
  if (params.get("before")) query.set("before", params.get("before"));
  const page = await get(`/api/jobs?${query}`);
  const requeue = (j) => h("button", { onclick: async () => {
    const done = await act(`/api/jobs/${j.job_id}/requeue`, `Re-queue job ${j.job_id} (${j.task})?`);
    if (done) { flash(`Job ${j.job_id} re-queued.`); await render(); }
  } }, "Re-queue");
  const rows = page.jobs.map((j) => h("tr", { "data-job-id": j.job_id },
    h("td", {}, jobLink(j.job_id)), h("td", {}, j.task), h("td", { class: "hide-narrow" }, j.queue),
    h("td", {}, (j.error || "").split("\n").filter(Boolean).pop() || ""),
    h("td", { class: "hide-narrow" }, when(j.finished_at)), h("td", {}, requeue(j))));
  showResults(() => [
    h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Jobs that failed every attempt (FAILED). Re-queued, a job runs again from its first attempt.")],
    h("div", { class: "actions" }, h("button", { class: "danger", disabled: !page.jobs.length, onclick: async () => {
      const done = await act("/api/dead-letters/requeue", "Re-queue every dead letter?");
      if (done) { flash(`Re-queued ${done.requeued.length} job(s).`); await render(); }
    } }, "Re-queue all")),
    table([["id"], ["task"], ["queue", "hide-narrow"], ["last error"], ["failed", "hide-narrow"], [""]], rows, "No dead letters."),
    pager(page.next),
  );
};
pages.deadLetters.live = { ms: 2000, jobs: true };

pages.job = async (id) => {
  const j = await get(`/api/jobs/${id}`);
  const actions = [];
  if (LIVE.has(j.status)) actions.push(h("button", { class: "danger", onclick: async () => {
    if (await act(`/api/jobs/${id}/cancel`, `Cancel job ${id} (${j.task})?`)) await render();
  } }, "Cancel"));
  if (j.status === "FAILED") actions.push(h("button", { onclick: async () => {
    if (await act(`/api/jobs/${id}/requeue`, `Re-queue job ${id} (${j.task})?`)) await render();
  } }, "Re-queue"));
  const history = j.history.map((a) => h("tr", {},
    h("td", { class: "num" }, a.token), h("td", {}, a.worker || "—"), h("td", {}, when(a.started_at)),
    h("td", {}, when(a.finished_at)), h("td", {}, a.outcome), h("td", {}, a.error ? h("pre", {}, a.error) : "")));
  show(
    h("h1", {}, `Job ${id} `, state(j.status)),
    h("dl", {},
      h("dt", {}, "task"), h("dd", {}, j.task),
      h("dt", {}, "queue"), h("dd", {}, j.queue),
      h("dt", {}, "priority"), h("dd", {}, j.priority),
      h("dt", {}, "attempts"), h("dd", {}, `${j.attempts} (retries allowed: ${j.max_retries})`),
      h("dt", {}, "worker"), h("dd", {}, j.worker || "—"),
      h("dt", {}, "fencing token"), h("dd", {}, j.token),
      h("dt", {}, "idempotency key"), h("dd", {}, j.idempotency_key || "—"),
      h("dt", {}, "depends on"), h("dd", {}, j.depends_on.length ? j.depends_on.map((p) => [jobLink(p), " "]) : "—"),
      j.workflow_id ? [h("dt", {}, "workflow"), h("dd", {},
        h("a", { href: `/workflows/${j.workflow_id}`, id: "workflow" }, `workflow ${j.workflow_id}`), `, step ${j.step}`)] : null,
      j.concurrency_key ? [h("dt", {}, "concurrency key"), h("dd", {}, `${j.concurrency_key} (max ${j.max_concurrent})`)] : null,
      h("dt", {}, "created"), h("dd", {}, when(j.created_at)),
      h("dt", {}, "started"), h("dd", {}, when(j.started_at)),
      h("dt", {}, "finished"), h("dd", {}, when(j.finished_at)),
      j.not_before ? [h("dt", {}, "not before"), h("dd", {}, when(j.not_before))] : null),
    h("div", { class: "actions" }, actions),
    h("h2", {}, "Arguments"), argumentsOf(j),
    j.status === "SUCCEEDED" ? [h("h2", {}, "Result"), h("pre", { id: "result" }, JSON.stringify(j.result, null, 2))] : null,
    j.error ? [h("h2", {}, "Error"), h("pre", { id: "error" }, j.error)] : null,
    h("h2", {}, "Attempts"),
    table([["token", "num"], ["worker"], ["started"], ["finished"], ["outcome"], ["error"]], history, "Not run yet."),
  );
  pages.job.ids = new Set([Number(id)]);
};
pages.job.live = { ms: 500, only: () => pages.job.ids };

// Arguments as JSON, each block cut at SHOWN_CHARS (`corral job ID --json` has them all);
// the scheduler withholds them past its own bound, and the page says their size.
const SHOWN_CHARS = 20000;
function argumentsOf(j) {
  if (j.args === null && j.payload_bytes) {
    return h("p", { class: "muted", id: "args" }, `${j.payload_bytes.toLocaleString()} bytes: too large to show here (corral job ${j.job_id} --json).`);
  }
  const block = (id, label, value) => {
    const text = JSON.stringify(value, null, 2) ?? "null";
    const cut = text.length > SHOWN_CHARS;
    return [h("h3", {}, label), h("pre", { id }, cut ? text.slice(0, SHOWN_CHARS) : text),
      cut ? h("p", { class: "muted" }, `… ${(text.length - SHOWN_CHARS).toLocaleString()} more characters not shown (corral job ${j.job_id} --json).`) : null];
  };
  const named = j.kwargs && Object.keys(j.kwargs).length;
  return [block("args", "args", j.args ?? []), named ? block("kwargs", "kwargs", j.kwargs) : null];
}

pages.workflow = async (id) => {
  const w = await get(`/api/workflows/${id}`);
  const rows = w.steps.map((s) => h("tr", { "data-step": s.name },
    h("td", {}, s.name), h("td", {}, jobLink(s.job_id)), h("td", {}, state(s.status)), h("td", {}, s.task),
    h("td", { class: "hide-narrow" }, s.after.join(", ")), h("td", {}, s.error ? (s.error.split("\n").filter(Boolean).pop() || "") : "")));
  show(
    h("h1", {}, `Workflow ${id}: ${w.name}`),
    h("p", { class: "muted" }, `Created ${when(w.created_at)}; ${w.steps.length} steps.`),
    dag(w.steps),
    h("h2", {}, "Steps"),
    table([["step"], ["job"], ["state"], ["task"], ["after", "hide-narrow"], ["error"]], rows),
  );
  pages.workflow.ids = new Set(w.steps.map((s) => s.job_id));
};
pages.workflow.live = { ms: 500, only: () => pages.workflow.ids };

// The workflow's graph: each step in the column of its depth (the longest chain of
// steps before it), steps of one depth stacked; edges from each step to those after it.
function dag(steps) {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const depth = new Map();
  const depthOf = (s) => {  // steps come in topological order, so parents are known
    if (!depth.has(s.name)) depth.set(s.name, s.after.reduce((d, p) => Math.max(d, 1 + (depth.get(p) ?? 0)), 0));
    return depth.get(s.name);
  };
  const columns = [];
  for (const s of steps) (columns[depthOf(s)] ||= []).push(s);
  const NW = 150, NH = 40, GX = 50, GY = 16, PAD = 10;
  const at = new Map();
  columns.forEach((col, c) => col.forEach((s, r) => at.set(s.name, { x: PAD + c * (NW + GX), y: PAD + r * (NH + GY) })));
  const width = PAD * 2 + columns.length * (NW + GX) - GX;
  const height = PAD * 2 + Math.max(...columns.map((c) => c.length)) * (NH + GY) - GY;
  const svg = h("svg:svg", { class: "dag", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "the workflow's steps and their dependencies", style: `max-width:${width}px` });
  for (const s of steps) for (const p of s.after) {
    const a = at.get(p), b = at.get(s.name);
    if (!a || !b || !byName.has(p)) continue;
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    svg.append(h("svg:path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  }
  for (const s of steps) {
    const { x, y } = at.get(s.name);
    const label = s.name.length > 20 ? `${s.name.slice(0, 19)}…` : s.name;
    const link = h("svg:a", { href: `/jobs/${s.job_id}` },
      h("svg:g", { class: `node s-${s.status}`, "data-step": s.name, "data-state": s.status },
        h("svg:title", {}, `${s.name}: ${s.status} (job ${s.job_id}, ${s.task})`),
        h("svg:rect", { x, y, width: NW, height: NH, rx: 6 }),
        h("svg:text", { x: x + 8, y: y + 16 }, label),
        h("svg:text", { x: x + 8, y: y + 32, class: `s-${s.status}`, style: "fill:currentColor;font-size:11px" }, s.status)));
    svg.append(link);
  }
  return h("div", { class: "scroll" }, svg);
}

pages.schedules = async () => {
  const [schedules, limits] = await Promise.all([get("/api/schedules"), get("/api/limits")]);
  const toggle = (s) => {
    const action = s.paused ? "resume" : "pause";
    return h("button", { onclick: async () => {
      if (await act(`/api/schedules/${encodeURIComponent(s.name)}/${action}`, `${s.paused ? "Resume" : "Pause"} schedule ${s.name}?`)) await render();
    } }, s.paused ? "Resume" : "Pause");
  };
  show(
    h("h1", {}, "Schedules"),
    table([["name"], ["when"], ["task"], ["next"], ["last"], [""]], schedules.map((s) => h("tr", { "data-schedule": s.name },
      h("td", {}, s.name), h("td", {}, `${s.spec}${s.tz ? ` (${s.tz})` : ""}`), h("td", {}, s.task),
      h("td", {}, s.paused ? "paused" : when(s.next_fire)),
      h("td", {}, s.last_job_id ? [when(s.last_fire), " ", jobLink(s.last_job_id)] : "—"), h("td", {}, toggle(s)))), "No schedules."),
    h("h2", {}, "Rate limits"),
    table([["name"], ["jobs", "num"], ["per (s)", "num"], ["burst", "num"]], limits.map((l) => h("tr", {},
      h("td", {}, l.name), h("td", { class: "num" }, l.count), h("td", { class: "num" }, l.period), h("td", { class: "num" }, l.burst))), "No rate limits."),
  );
};

// ---------------------------------------------------------------- routing, live

function route() {
  const path = location.pathname.replace(/\/+$/, "") || "/";
  let m;
  if ((m = path.match(/^\/jobs\/(\d+)$/))) return [pages.job, m[1], "/jobs"];
  if ((m = path.match(/^\/workflows\/(\d+)$/))) return [pages.workflow, m[1], "/jobs"];
  const named = { "/": pages.overview, "/queues": pages.queues, "/workers": pages.workers, "/jobs": pages.jobs,
    "/dead-letters": pages.deadLetters, "/schedules": pages.schedules };
  return [named[path], null, path];
}

const [current, arg, menu] = route();
async function render() {
  try { await current(arg); } catch (e) { show(h("h1", {}, "Cannot show this page"), h("p", { class: "notice" }, e.message)); }
}

function listen() {
  const dot = document.getElementById("live");
  const live = current.live;
  if (!live) { dot.textContent = ""; return; }
  const refresh = throttle(render, live.ms);
  const source = new EventSource("/api/events");
  source.onopen = () => { dot.textContent = "live"; dot.className = "live on"; refresh(); };
  source.onerror = () => { dot.textContent = "reconnecting"; dot.className = "live off"; };
  source.addEventListener("refused", (e) => { dot.textContent = "not live"; flash(e.data, true); source.close(); });
  source.onmessage = (e) => {
    const frame = JSON.parse(e.data);
    const only = live.only && live.only();
    const relevant = frame.dropped > 0 || frame.events.some((ev) =>
      only ? only.has(ev.job_id) : !live.jobs || ev.kind === "job");
    if (relevant) refresh();
  };
}

for (const a of document.querySelectorAll("nav a")) if (a.getAttribute("href") === menu) a.classList.add("here");
if (current) { render().then(listen); } else { show(h("h1", {}, "Not found"), h("p", {}, "No such page.")); }
