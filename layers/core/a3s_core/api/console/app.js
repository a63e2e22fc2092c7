// The console: sign in with a key, then sessions (with their runs, workflows and pending tasks),
// a run's timeline, a workflow's steps. Views are picked by the URL's hash: #session/ID, #run/ID,
// #workflow/ID.
import { api, key } from "./api.js";
import { badge, clock, el, link, replace, short } from "./dom.js";
import { showWorkflow } from "./gantt.js";
import { onError, Poller } from "./poll.js";
import { taskCard } from "./tasks.js";
import { showRun } from "./timeline.js";

const $ = (id) => document.getElementById(id);
let listPoller = null;
let detailPoller = null;
let selected = null;

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function refused(err) {
  if (!err.unauthorized) return false;
  signOut(`The API key was refused (${err.status}: ${err.message}). Check it and enter it again.`);
  return true;
}

onError((err) => {
  if (!refused(err)) status(`Error: ${err.message}`, true);
});

function signOut(message = "") {
  key.clear();
  listPoller?.stop();
  detailPoller?.stop();
  $("app").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  status("");
  $("key").focus();
}

async function signIn(event) {
  event.preventDefault();
  key.set($("key").value.trim());
  $("login-error").textContent = "";
  try {
    await api.sessions(1);
  } catch (err) {
    if (!refused(err)) $("login-error").textContent = `Cannot sign in: ${err.message}`;
    return;
  }
  $("key").value = "";
  open();
}

function open() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  listPoller?.stop();
  listPoller = new Poller(5000, refreshSessions).start();
  route();
}

async function refreshSessions() {
  const { sessions } = await api.sessions(50);
  replace($("sessions"), ...sessions.map((s) => el("li", null,
    el("a", { href: `#session/${encodeURIComponent(s.session_id)}`, "data-session": s.session_id,
              class: s.session_id === selected ? "selected" : null },
       el("code", null, s.session_id), s.closed ? " (closed)" : "",
       el("span", { class: "sub" }, `${short(s.workspace, 40)} · ${s.model} · ${clock(s.created_at)}`)))));
  if (!sessions.length) $("sessions").append(el("li", { class: "muted" }, "No sessions yet."));
  status(`Updated ${new Date().toLocaleTimeString()}`);
}

function runsTable(runs) {
  if (!runs.length) return el("p", { class: "muted" }, "No runs.");
  return el("table", { id: "runs" },
    el("thead", null, el("tr", null, ...["run", "status", "started", "text"].map((h) => el("th", null, h)))),
    el("tbody", null, ...runs.map((r) => el("tr", { "data-run": r.run_id, "data-status": r.status },
      el("td", null, link("run", r.run_id, r.run_id), r.agent ? el("span", { class: "muted" }, ` ${r.agent}`) : null),
      el("td", null, badge(r.status)),
      el("td", null, clock(r.created_at)),
      el("td", { class: "text", title: r.error || r.text }, short(r.error || r.text))))));
}

function workflowsTable(workflows) {
  if (!workflows.length) return el("p", { class: "muted" }, "No workflows.");
  return el("table", { id: "workflows" },
    el("thead", null, el("tr", null, ...["workflow", "kind", "status", "steps", "started"].map((h) => el("th", null, h)))),
    el("tbody", null, ...workflows.map((w) => el("tr", { "data-workflow": w.workflow_id },
      el("td", null, link("workflow", w.workflow_id, w.workflow_id)),
      el("td", null, w.kind, w.attempt > 1 ? ` (attempt ${w.attempt})` : ""),
      el("td", null, badge(w.status)),
      el("td", null, `${w.finished} / ${w.total}`),
      el("td", null, clock(w.created_at))))));
}

function showSession(container, sessionId) {
  const head = el("div", { class: "card" }, "Loading session…");
  const tasks = el("div", { id: "tasks" });
  const runs = el("div");
  const workflows = el("div");
  const cards = new Map(); // task_id -> card; a card answered here stays to show the answer
  replace(container, head,
          el("div", { class: "card" }, el("h3", null, "Pending tasks"), tasks),
          el("div", { class: "card" }, el("h3", null, "Runs"), runs),
          el("div", { class: "card" }, el("h3", null, "Workflows"), workflows));
  const poller = new Poller(3000, async () => {
    const [session, pending, runList, wfList] = await Promise.all([
      api.session(sessionId),
      api.pendingTasks(sessionId), api.runs(sessionId), api.workflows(sessionId)]);
    replace(head, el("h2", null, "Session ", el("code", null, sessionId), session?.closed ? " (closed)" : ""),
            session ? el("p", { class: "muted" }, `${session.workspace} · ${session.model}`,
                         session.permissive ? " · permissive" : " · execute-lane tools need approval") : null);
    const ids = new Set(pending.tasks.map((t) => t.task_id));
    for (const [id, card] of cards) {
      if (!ids.has(id) && !card.dataset.answer) {
        card.remove();
        cards.delete(id);
      }
    }
    for (const task of pending.tasks) {
      if (!cards.has(task.task_id)) {
        const card = taskCard(task, () => poller.run());
        cards.set(task.task_id, card);
        tasks.prepend(card);
      }
    }
    tasks.querySelector(".none")?.remove();
    if (!cards.size) tasks.append(el("p", { class: "muted none" }, "Nothing waiting."));
    replace(runs, runsTable(runList.runs.slice().sort((a, b) => b.created_at - a.created_at)));
    replace(workflows, workflowsTable(wfList.workflows));
  });
  return poller.start();
}

function route() {
  if (!key.get()) return;
  detailPoller?.stop();
  const [kind, raw] = location.hash.slice(1).split("/");
  const id = raw ? decodeURIComponent(raw) : "";
  const detail = $("detail");
  selected = kind === "session" ? id : selected;
  listPoller?.run(); // a session just opened by link may be newer than the list
  document.querySelectorAll("#sessions a").forEach((a) => a.classList.toggle("selected", a.dataset.session === selected));
  if (kind === "session" && id) detailPoller = showSession(detail, id);
  else if (kind === "run" && id) detailPoller = showRun(detail, id);
  else if (kind === "workflow" && id) detailPoller = showWorkflow(detail, id);
  else replace(detail, el("div", { class: "card muted" }, "Pick a session to see its runs, workflows and approvals."));
}

$("login-form").addEventListener("submit", signIn);
$("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
if (key.get()) open();
else signOut();
