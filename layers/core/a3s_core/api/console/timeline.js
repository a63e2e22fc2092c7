// A run's event history as a timeline: read on from the last event with after/wait_ms until the
// run is done. Tool calls are one entry each, filled in with their output when they end.
import { api } from "./api.js";
import { badge, clock, el, link, replace, short, since } from "./dom.js";
import { Poller } from "./poll.js";

const LONG_POLL_MS = 5000;

function describe(event) {
  switch (event.type) {
    case "text":
      return [el("pre", { class: "text" }, event.text)];
    case "turn_start":
      return [`turn ${event.turn}`];
    case "turn_end":
      return [`turn ${event.turn} ended`];
    case "external_task_pending":
      return [`${event.command_type} on the ${event.lane} lane`, event.task_id ? ` (task ${event.task_id})` : "",
              event.timeout_ms ? `, answer within ${Math.round(event.timeout_ms / 1000)} s` : ""];
    case "external_task_completed":
      return [`${event.command_type || event.tool || "task"}: ${event.status || (event.is_error ? "error" : "done")}`];
    case "control_signal_applied":
      return [event.signal, event.text ? el("pre", null, event.text) : null];
    case "run_end":
      return [badge(event.status), ` ${event.stop_reason || ""}`,
              event.error ? el("pre", { class: "error" }, event.error) : null,
              event.text ? el("pre", null, event.text) : null];
    default: {
      const { seq, type, ts, ...rest } = event;
      return Object.keys(rest).length ? [el("pre", null, JSON.stringify(rest, null, 2))] : [];
    }
  }
}

export function showRun(container, runId) {
  const header = el("div", { class: "card" }, "Loading run…");
  const list = el("ol", { class: "timeline", id: "timeline" });
  const tools = new Map(); // call_id -> its entry
  let first = null;
  let after = 0;
  replace(container, header, el("div", { class: "card" }, el("h3", null, "Events"), list));

  function entry(event, cls, kind, ...body) {
    first = first ?? event.ts;
    const li = el("li", { class: `${event.type} ${cls || ""}`, "data-seq": event.seq },
                  el("span", { class: "when", title: clock(event.ts) }, since(event.ts, first)),
                  el("span", { class: "kind" }, kind), ...body);
    list.append(li);
    return li;
  }

  function add(event) {
    if (event.type === "tool_start") {
      const li = entry(event, "tool", `tool ${event.tool}`, el("span", { class: "muted" }, `${event.lane} lane`));
      li.dataset.ts = event.ts;
      tools.set(event.call_id, li);
    } else if (event.type === "tool_end") {
      const out = el("pre", { class: `output${event.is_error ? " error" : ""}` }, event.output ?? "");
      const li = tools.get(event.call_id);
      if (li) {
        li.classList.toggle("is-error", Boolean(event.is_error));
        li.append(el("div", { class: "muted" }, `${event.is_error ? "failed" : "returned"} after `,
                      since(event.ts, Number(li.dataset.ts || event.ts)).slice(1)), out);
      } else {
        entry(event, `tool${event.is_error ? " is-error" : ""}`, `tool ${event.tool}`, out);
      }
    } else {
      entry(event, event.type === "run_end" ? event.status : "", event.type.replaceAll("_", " "), ...describe(event));
    }
  }

  async function renderHeader() {
    const run = await api.run(runId);
    replace(header,
      el("h2", null, "Run ", el("code", null, run.run_id), " ", badge(run.status)),
      el("p", { class: "muted" }, "session ", link("session", run.session_id, run.session_id),
         run.agent ? ` · agent ${run.agent}` : "", ` · ${run.turns} turns · ${run.tool_calls_count} tool calls`,
         ` · ${run.total_tokens} tokens · started ${clock(run.created_at)}`),
      run.parent ? el("p", { class: "muted" }, "step ", run.parent.key, " of workflow ",
                      link("workflow", run.parent.workflow_id, run.parent.workflow_id)) : null,
      run.children.length ? el("p", { class: "muted" }, "started workflows: ",
                               ...run.children.map((w) => [link("workflow", w, w), " "])) : null,
      run.error ? el("pre", { class: "error" }, run.error) : null,
      run.text ? el("pre", { class: "run-text" }, run.text) : null);
    return run;
  }

  const poller = new Poller(1000, async (signal) => {
    const page = await api.events(runId, after, LONG_POLL_MS, signal);
    page.events.forEach(add);
    after = page.next;
    if (page.events.length || page.done) await renderHeader();
    if (page.done && !page.events.length) poller.stop(); // read to the end
  });
  renderHeader().catch((err) => replace(header, el("p", { class: "error" }, err.message)));
  return poller.start();
}
