// wasmpod console: polls GET /v1/console/state once a second and redraws; actions go to the
// admin API's own routes with the bearer token kept in sessionStorage. No framework, no build.
"use strict";

const TOKEN_KEY = "wasmpod.adminToken";
const POLL_MS = 1000;
let state = null;
let pendingAction = null; // the action waiting for a token
let logAbort = null;

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

// h builds an element: h("td", {class: "x", dataset: {k: v}}, child, "text", ...).
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "onclick") el.addEventListener("click", v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of kids.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function fill(id, rows, empty) {
  const el = $(id);
  el.replaceChildren(...rows);
  if (rows.length === 0 && empty) {
    const cols = el.closest("table") ? el.closest("table").querySelectorAll("th").length : 1;
    el.append(el.tagName === "TBODY" ? h("tr", {}, h("td", { colspan: cols, class: "muted" }, empty)) : h("p", { class: "muted" }, empty));
  }
}

function showMessage(text, info) {
  const m = $("message");
  m.textContent = text;
  m.className = info ? "info" : "";
  m.hidden = !text;
}

function dur(seconds) {
  if (seconds === undefined || seconds === null) return "";
  if (seconds < 1) return (seconds * 1000).toFixed(0) + " ms";
  if (seconds < 120) return seconds.toFixed(1) + " s";
  if (seconds < 7200) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function ms(seconds) {
  if (!seconds) return "–";
  const m = seconds * 1000;
  return m < 1 ? (m * 1000).toFixed(0) + " µs" : m < 100 ? m.toFixed(2) + " ms" : m.toFixed(0) + " ms";
}

function ago(iso) {
  if (!iso) return "";
  return dur(Math.max(0, (Date.parse(state.now) - Date.parse(iso)) / 1000)) + " ago";
}

// spark draws values as a polyline scaled to its own maximum.
function spark(values, cls) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "spark" + (cls ? " " + cls : ""));
  svg.setAttribute("viewBox", "0 0 90 22");
  svg.setAttribute("preserveAspectRatio", "none");
  if (values.length > 1) {
    const max = Math.max(...values, 1e-9);
    const pts = values.map((v, i) => `${(i * 90 / (values.length - 1)).toFixed(1)},${(21 - v / max * 20).toFixed(1)}`);
    const pl = document.createElementNS(NS, "polyline");
    pl.setAttribute("points", pts.join(" "));
    svg.append(pl);
  }
  return svg;
}

function last(series, key) {
  return series.length ? series[series.length - 1][key] : 0;
}

async function api(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!resp.ok) {
    const why = data && data.error ? data.error : text.trim() || resp.statusText;
    const err = new Error(`${resp.status} ${resp.statusText}: ${why}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// act runs a mutating action. Without a token it is still sent, so that the host's refusal
// is what the operator reads, then the token form opens.
async function act(label, method, path, body) {
  showMessage(`${label}…`, true);
  try {
    await api(method, path, body);
    showMessage(`${label}: done.`, true);
  } catch (e) {
    if (e.status === 403 && state && !state.mutating) {
      showMessage(`Refused: ${label}: the host answered ${e.message}.`);
    } else if (e.status === 401 || e.status === 403) {
      showMessage(`Refused: ${label} needs the admin token. The host answered ${e.message}. ` +
        (token() ? "The token in this session was not accepted; enter it again." : "Enter the admin token and try again."));
      pendingAction = null;
      askToken();
    } else {
      showMessage(`${label} failed: ${e.message}`);
    }
  }
  poll(true);
}

function askToken() {
  $("token-form").hidden = false;
  $("token-input").value = "";
  $("token-input").focus();
}

function drawAuth() {
  const a = $("auth");
  if (!token()) {
    a.textContent = state && state.mutating ? "read-only: no admin token in this session" : "read-only (the host has no admin token)";
  } else {
    a.textContent = state && state.authorized ? "admin token accepted" : "admin token NOT accepted by the host";
  }
  $("token-forget").hidden = !token();
}

function drawHeader(s) {
  $("pod").textContent = s.pod;
  $("node").textContent = s.cluster ? `node ${s.cluster.node}` : "";
  const r = $("ready");
  r.textContent = s.ready ? "ready" : "not ready: " + (s.notReady || []).join("; ");
  r.className = "pill " + (s.ready ? "good" : "bad");
  $("updated").textContent = `${s.version.version || ""} · updated ${new Date(s.now).toLocaleTimeString()}`;
  drawAuth();
}

function raftRole(m) {
  if (m.leader) return "leader";
  return m.voter ? "follower (voter)" : "non-voter";
}

function drawCluster(s) {
  const c = s.cluster;
  $("raft").textContent = c ? `this node: ${c.node}, Raft ${c.raft_state}, leader ${c.raft_leader || "none known"}, term ${c.term}, ${c.alive_members} alive` :
    (s.errors && s.errors.cluster) || "";
  fill("members", s.members.map((m) => h("tr", { dataset: { member: m.name } },
    h("td", {}, m.name, m.local ? h("span", { class: "muted" }, " (this node)") : null),
    h("td", {}, m.addr),
    h("td", { class: "state " + (m.state === "alive" ? "good" : "bad") }, m.state),
    h("td", { class: "role" + (m.leader ? " good" : "") }, raftRole(m)),
    h("td", {}, ago(m.since)),
    h("td", {}, (m.meta.modules || []).join(", ")))), "no members");
}

function drawElections(s) {
  fill("elections", s.elections.map((e) => h("tr", { dataset: { election: e.name } },
    h("td", {}, e.name),
    h("td", { class: "holder " + (e.held && !e.expired ? "good" : "bad") }, e.held ? e.holder + (e.expired ? " (expired)" : "") : "nobody"),
    h("td", {}, e.session || ""),
    h("td", { class: "token" }, e.token !== undefined ? String(e.token) : h("span", { class: "muted" }, "hidden (admin token)")),
    h("td", {}, e.held ? dur(e.tokenAgeSeconds) : ""),
    h("td", {}, e.held ? dur(e.expiresInSeconds) : ""))), "no elections yet");
}

function moduleActions(m) {
  const path = (a) => `/v1/modules/${encodeURIComponent(m.name)}/${a}`;
  const b = (a) => h("button", { type: "button", class: "act-" + a, onclick: () => act(`${a} ${m.name}`, "POST", path(a)) }, a);
  const stopped = m.state === "stopped" || m.state === "failed";
  return [stopped ? b("start") : b("stop"), b("restart")];
}

function drawModules(s) {
  fill("modules", s.modules.map((m) => {
    const sr = m.series || [];
    const stateCls = m.state === "running" ? "good" : (m.state === "failed" || m.reason === "CrashLoopBackOff") ? "bad" : "warn";
    return h("tr", { dataset: { module: m.name } },
      h("td", {}, m.name, h("div", { class: "muted" }, m.role)),
      h("td", { class: "state " + stateCls }, m.state),
      h("td", { class: "ready " + (m.ready ? "good" : "bad") }, m.ready ? "yes" : "no"),
      h("td", { class: "restarts" }, m.restarts),
      h("td", {}, "v" + m.version, h("div", { class: "muted" }, (m.sha256 || "").slice(0, 12))),
      h("td", {}, `${m.instances}/${m.target}`, h("div", { class: "muted" }, `${m.busy} busy`)),
      h("td", {}, spark(sr.map((p) => p.rate)), " ", last(sr, "rate").toFixed(1)),
      h("td", {}, ms(last(sr, "p50"))),
      h("td", {}, spark(sr.map((p) => p.p99)), " ", ms(last(sr, "p99"))),
      h("td", {}, spark(sr.map((p) => p.errorRate), "err"), " ", last(sr, "errorRate").toFixed(2)),
      h("td", { class: "lasterr", title: m.lastError || "" }, [m.reason, m.lastError].filter(Boolean).join(": ")),
      h("td", {}, moduleActions(m)));
  }), "no modules");
  const sel = $("log-module");
  const names = s.modules.map((m) => m.name);
  if ([...sel.options].map((o) => o.value).join() !== names.join()) {
    const cur = sel.value;
    sel.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
    if (names.includes(cur)) sel.value = cur;
  }
}

function pct(done, total) {
  return total > 0 ? Math.floor(done * 100 / total) : 0;
}

function bar(done, total, dead) {
  const b = h("span", { class: "bar" + (dead ? " dead" : "") }, h("span"));
  b.firstChild.style.width = pct(done, total) + "%";
  return b;
}

function drawQueue(s) {
  const q = s.queue;
  if (!q) {
    fill("stages", [], "this host runs no work queue");
    fill("jobs", [], "");
    fill("dead", [], "");
    return;
  }
  fill("stages", q.stages.map((st) => h("tr", {},
    h("td", {}, st.pipeline), h("td", {}, st.name), h("td", {}, st.depth), h("td", {}, st.leased),
    h("td", {}, st.completed), h("td", {}, st.retries), h("td", { class: st.dead ? "bad" : "" }, st.dead))), "no pipelines");
  fill("jobs", q.jobs.map((j) => {
    let done = 0, total = 0;
    for (const st of j.stages) { done += st.done; total += st.expected; }
    const p = pct(done, total);
    return h("div", { class: "job", dataset: { job: String(j.id), state: j.state } },
      h("div", {}, h("b", {}, `job ${j.id}`), ` · ${j.pipeline} · ${j.inputs} inputs · `,
        h("span", { class: "job-state" }, j.state), " · ", h("span", { class: "progress" }, `${p}%`),
        h("span", { class: "muted" }, ` · submitted ${ago(j.created)}`)),
      j.stages.map((st) => h("div", { class: "stage", dataset: { stage: st.name } },
        h("span", { class: "name" }, st.name), bar(st.done, st.expected, st.dead > 0),
        h("span", { class: "muted" }, `${st.done}/${st.expected} done` + (st.dead ? `, ${st.dead} dead` : "") +
          (st.redelivered ? `, ${st.redelivered} redelivered` : "")))));
  }), "no jobs yet");
  fill("dead", q.dead.map((t) => h("div", { class: "task", dataset: { task: String(t.id) } },
    h("div", {}, h("b", {}, `task ${t.id}`), ` · job ${t.job} · ${t.pipeline}/${t.stage_name} · ${t.attempts} attempts · `,
      (t.inputs || []).map((f) => f.name).join(", "), t.inputCount > (t.inputs || []).length ? ` and ${t.inputCount - t.inputs.length} more` : "", " ",
      h("button", { type: "button", class: "retry", onclick: () => act(`retry task ${t.id}`, "POST", `/v1/queue/tasks/${t.id}/retry`) }, "Retry")),
    h("ol", { class: "errors" }, (t.errors || []).map((e) => h("li", {}, `attempt ${e.attempt} at ${new Date(e.at).toLocaleTimeString()}: ${e.message}`))))),
  "no dead letters");
  if (q.deadTotal > q.dead.length) {
    $("dead").append(h("p", { class: "muted" }, `${q.deadTotal - q.dead.length} more dead letters: \`wasmpod queue dead\` lists them all.`));
  }
}

function drawScatter(s) {
  const sc = s.scatter;
  if (!sc) {
    $("scatter-counts").textContent = "this pod has no scatter root";
    fill("shards", [], "");
    fill("answers", [], "");
    return;
  }
  const c = sc.counts;
  $("scatter-counts").textContent = `${sc.path}: ${c.requests} requests, ${c.partial} partial, ${c.failed} failed`;
  fill("shards", sc.shards.map((sh) => h("tr", { dataset: { shard: sh.shard } },
    h("td", {}, sh.shard), h("td", {}, sh.leaf || ""), h("td", {}, ms(sh.localP50)), h("td", {}, ms(sh.localP99)),
    h("td", {}, ms(sh.p50_ns / 1e9)), h("td", {}, ms(sh.p99_ns / 1e9)), h("td", {}, sh.samples),
    h("td", { class: (c.missing || {})[sh.shard] ? "bad" : "" }, (c.missing || {})[sh.shard] || 0))), "no shards");
  fill("answers", sc.recent.map((a) => h("tr", { class: a.partial ? "partial" : "" },
    h("td", {}, ago(a.at)), h("td", {}, a.ms.toFixed(1) + " ms"),
    h("td", { class: a.error ? "bad" : a.partial ? "warn" : "good" }, a.error ? "failed: " + a.error : a.partial ? "partial" : "complete"),
    h("td", {}, (a.missing || []).join(", ")), h("td", {}, a.hedges || 0))), "no scatter requests yet");
}

let polling = false;
let timer = null;

async function poll(now) {
  if (polling) return;
  polling = true;
  clearTimeout(timer);
  try {
    state = await api("GET", "/v1/console/state");
    drawHeader(state);
    drawCluster(state);
    drawElections(state);
    drawModules(state);
    drawQueue(state);
    drawScatter(state);
    document.body.dataset.updated = state.now;
    if ($("message").dataset.stale) { showMessage(""); delete $("message").dataset.stale; }
  } catch (e) {
    showMessage(`Cannot read the host's state: ${e.message}. Retrying every second.`);
    $("message").dataset.stale = "1";
  } finally {
    polling = false;
    timer = setTimeout(poll, POLL_MS);
  }
}

async function showLogs() {
  if (logAbort) logAbort.abort();
  const name = $("log-module").value;
  const pre = $("logs");
  pre.textContent = "";
  if (!name) return;
  const follow = $("log-follow").checked;
  logAbort = new AbortController();
  const fmt = (e) => `${new Date(e.time).toLocaleTimeString()} ${e.level} ${e.source}: ${e.message}\n`;
  try {
    const headers = token() ? { Authorization: "Bearer " + token() } : {}; // logs need the token when the host has one
    const resp = await fetch(`/v1/modules/${encodeURIComponent(name)}/logs?tail=200${follow ? "&follow=1" : ""}`, { headers, signal: logAbort.signal, cache: "no-store" });
    if (!resp.ok) throw new Error(`${resp.status} ${resp.statusText}: ${await resp.text()}`);
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.trim()) continue;
        try { pre.append(fmt(JSON.parse(line))); } catch (e) { pre.append(line + "\n"); }
        pre.scrollTop = pre.scrollHeight;
      }
    }
    if (follow) pre.append("— the host closed the log stream —\n");
  } catch (e) {
    if (e.name !== "AbortError") showMessage(`Cannot read the logs of ${name}: ${e.message}`);
  }
}

function init() {
  $("token-set").addEventListener("click", askToken);
  $("token-cancel").addEventListener("click", () => { $("token-form").hidden = true; });
  $("token-forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); drawAuth(); poll(true); });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("token-input").value.trim();
    if (!v) { showMessage("The token is empty."); return; }
    sessionStorage.setItem(TOKEN_KEY, v);
    $("token-form").hidden = true;
    showMessage("Token kept for this tab's session.", true);
    poll(true);
  });
  $("log-load").addEventListener("click", showLogs);
  $("log-follow").addEventListener("change", showLogs);
  poll(true);
}

document.addEventListener("DOMContentLoaded", init);
