// Pending external tasks of a session. A `confirm` task on the control lane asks a person
// whether a tool may run: Approve and Deny answer it through .../complete.
import { api } from "./api.js";
import { clock, el, link } from "./dom.js";

export function isApproval(task) {
  return task.lane === "control" && task.command_type === "confirm";
}

async function answer(task, approved, card) {
  const buttons = card.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  const result = card.querySelector(".result");
  try {
    const { completed } = await api.complete(task.session_id, task.task_id,
                                             { success: true, result: { approved } });
    result.textContent = completed ? (approved ? "Approved: the run goes on." : "Denied: the tool will not run.")
                                   : "Already answered elsewhere.";
    card.dataset.answer = completed ? (approved ? "approved" : "denied") : "late";
  } catch (err) {
    result.textContent = `Could not answer: ${err.message}`;
    result.classList.add("error");
    buttons.forEach((b) => { b.disabled = false; });
  }
}

export function taskCard(task, answered) {
  const approval = isApproval(task);
  const payload = approval ? task.payload.arguments : task.payload;
  const card = el("div", { class: `task${approval ? " confirm" : ""}`, "data-task": task.task_id },
    el("div", null, el("strong", null, approval ? `Allow ${task.payload.tool}?` : `${task.command_type}`),
       el("span", { class: "muted" }, ` ${task.lane} lane · run `), link("run", task.run_id, task.run_id),
       el("span", { class: "muted" }, ` · asked ${clock(task.created_at)}`)),
    el("pre", null, JSON.stringify(payload ?? {}, null, 2)));
  const result = el("span", { class: "result", role: "status" });
  if (approval) {
    card.append(el("div", { class: "actions" },
      el("button", { type: "button", class: "approve", onclick: () => answer(task, true, card).then(answered) }, "Approve"),
      el("button", { type: "button", class: "deny", onclick: () => answer(task, false, card).then(answered) }, "Deny"),
      result));
  } else {
    card.append(el("div", { class: "muted" }, "Waiting for a worker on this lane."));
  }
  return card;
}
