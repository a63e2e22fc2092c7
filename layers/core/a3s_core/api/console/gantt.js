// A workflow's steps on a common time axis: each bar runs from the step's launch to its settling
// (or to now while it runs); failures are red with their error, later attempts are labelled.
import { api } from "./api.js";
import { badge, clock, el, link, replace, svg } from "./dom.js";
import { Poller } from "./poll.js";

const WIDTH = 800;
const LABEL = 180;
const ROW = 26;
const AXIS = 24;

function seconds(ms) {
  return ms < 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

function niceStep(span) {
  const raw = span / 5;
  const unit = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * unit).find((s) => s >= raw) || raw;
}

// A step's name: the caller's task_id once the workflow is done (its outcomes carry it), its
// position until then.
function names(view) {
  return (view.outcomes || []).map((o) => o && o.task_id);
}

export function chart(steps, now, named = []) {
  const label = (s) => named[s.index] || `step ${s.index + 1}`;
  const started = steps.filter((s) => s.started_at);
  if (!started.length) return el("p", { class: "muted" }, "No step has been launched yet.");
  const t0 = Math.min(...started.map((s) => s.started_at));
  const t1 = Math.max(...started.map((s) => s.finished_at || now), t0 + 1);
  const span = t1 - t0;
  const x = (t) => LABEL + ((t - t0) / span) * (WIDTH - LABEL - 10);
  const height = AXIS + steps.length * ROW + 4;
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
                            "aria-label": "workflow steps on a time axis" });
  const axis = svg("g", { class: "axis" });
  const step = niceStep(span);
  for (let t = 0; t <= span; t += step) {
    axis.append(svg("line", { x1: x(t0 + t), x2: x(t0 + t), y1: AXIS - 6, y2: height }),
                svg("text", { x: x(t0 + t), y: AXIS - 10, "text-anchor": "middle" }, seconds(t)));
  }
  root.append(axis);
  steps.forEach((s, i) => {
    const y = AXIS + i * ROW;
    const row = svg("g", { class: "step", "data-index": s.index, "data-status": s.status });
    row.append(svg("text", { class: "label", x: 4, y: y + ROW / 2 + 4 }, label(s),
                   s.attempt > 1 ? svg("tspan", { class: "sub" }, `  attempt ${s.attempt}`) : null));
    if (s.started_at) {
      const end = s.finished_at || now;
      const bar = svg("rect", { class: `bar ${s.status}`, x: x(s.started_at), y: y + 5, rx: 3, height: ROW - 10,
                                width: Math.max(2, x(end) - x(s.started_at)) });
      const title = [`${label(s)}: ${s.status}`, s.attempt > 1 ? `attempt ${s.attempt}` : "",
                     `launched ${clock(s.started_at)}`, s.finished_at ? `settled ${clock(s.finished_at)}` : "running",
                     s.finished_at ? `took ${seconds(s.finished_at - s.started_at)}` : "",
                     s.error ? `error: ${s.error}` : ""].filter(Boolean).join("\n");
      const marks = [svg("title", null, title), bar,
                     svg("line", { class: "launch", x1: x(s.started_at), x2: x(s.started_at), y1: y + 3, y2: y + ROW - 3 })];
      if (s.finished_at) marks.push(svg("circle", { class: `settle ${s.status}`, cx: x(s.finished_at), cy: y + ROW / 2, r: 4 }));
      row.append(s.run_id ? svg("a", { href: `#run/${encodeURIComponent(s.run_id)}` }, ...marks) : svg("g", null, ...marks));
    } else {
      row.append(svg("text", { class: "label sub", x: LABEL, y: y + ROW / 2 + 4 }, "pending"));
    }
    root.append(row);
  });
  return el("div", { class: "gantt" }, root,
            el("div", { class: "legend" }, ...["| launched", "━ running", "● settled", "red: failed",
                                                "click a bar for its run"].map((t) => el("span", null, t))));
}

function table(steps, named) {
  return el("table", { id: "steps" },
    el("thead", null, el("tr", null, ...["step", "status", "attempt", "run", "took"].map((h) => el("th", null, h)))),
    el("tbody", null, ...steps.map((s) => el("tr", { "data-index": s.index, "data-status": s.status },
      el("td", null, named[s.index] || `step ${s.index + 1}`, s.agent ? el("span", { class: "muted" }, ` ${s.agent}`) : null),
      el("td", null, badge(s.status)),
      el("td", null, String(s.attempt)),
      el("td", null, s.run_id ? link("run", s.run_id, s.run_id) : "—"),
      el("td", null, s.started_at && s.finished_at ? seconds(s.finished_at - s.started_at) : "")))));
}

export function showWorkflow(container, workflowId) {
  const head = el("div", { class: "card" }, "Loading workflow…");
  const body = el("div", { class: "card" });
  replace(container, head, body);
  const poller = new Poller(2000, async () => {
    const [view, steps] = await Promise.all([api.workflow(workflowId), api.steps(workflowId)]);
    replace(head, el("h2", null, `Workflow `, el("code", null, view.workflow_id), " ", badge(view.status)),
            el("p", { class: "muted", id: "workflow-progress" },
               `${view.kind} · ${view.finished} of ${view.total} steps settled`,
               view.attempt > 1 ? ` · attempt ${view.attempt}` : ""));
    const failed = steps.steps.filter((s) => s.status === "failed");
    const named = names(view);
    replace(body, el("h3", null, "Steps"), chart(steps.steps, Date.now(), named), table(steps.steps, named),
            failed.length ? el("div", null, el("h3", null, "Failures"),
              ...failed.map((s) => el("div", { class: "task" }, el("strong", null, named[s.index] || `step ${s.index + 1}`),
                                      ` attempt ${s.attempt}`, el("pre", { class: "error" }, s.error || "failed"))))
              : null);
    if (view.done) poller.stop();
  });
  return poller.start();
}
