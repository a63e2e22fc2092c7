"""The fan-out engine, in the style of a Step Functions Map state, on DynamoDB + SQS.

A workflow is one item, each step another. Each step runs as a child run of a named subagent.
Nothing waits inside a Lambda: a step's child run ends in the run driver, which settles the step
(a transaction that also counts it on the workflow), launches the step `concurrency` positions
further on, and, if its count completed the workflow, ends it with a conditional write.
Every part is idempotent, so a redelivered message replays it without doing anything twice.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from a3s_core import telemetry
from a3s_core.domain.agents import BUILTIN
from a3s_core.domain.errors import BadRequest, Conflict, NotFound
from a3s_core.domain.items import (
    Run,
    RunStatus,
    Session,
    Step,
    StepRef,
    StepStatus,
    Workflow,
    WorkflowKind,
    WorkflowStatus,
    new_id,
)
from a3s_core.domain.outcomes import StepOutcome, Usage
from a3s_core.engine import push
from a3s_core.engine.messages import WorkflowStart, WorkflowTimeout
from a3s_core.engine.queues import advance_message
from a3s_core.runtime import Runtime
from a3s_core.workspace import tenant as tenant_workspace

OUTPUT_CAP = 100_000  # characters of a child's output kept in its step (the run keeps all of it)


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def child_run_id(wf: Workflow, step: Step, stage: int) -> str:
    """Deterministic, so a replayed launch finds the run it made instead of making another."""
    raw = f"{wf.tenant}/{wf.workflow_id}/{step.key}/{step.attempt}/{stage}"
    return "run-" + hashlib.sha256(raw.encode()).hexdigest()[:20]


def workflow_message(tenant: str, workflow_id: str) -> WorkflowStart:
    return WorkflowStart(tenant=tenant, workflow_id=workflow_id)


def schema_contract(schema: dict[str, Any]) -> str:
    return ("\n\nAnswer with only a JSON value (no prose, no code fence) that validates against this "
            f"JSON Schema:\n{json.dumps(schema)}")


def render(template: Any, item: Any, previous: StepOutcome | None) -> Any:
    """Fill `{item}` and `{previous.output}` into a declarative pipeline stage's spec."""
    if isinstance(template, str):
        text = template.replace("{item}", item if isinstance(item, str) else json.dumps(item))
        return text.replace("{previous.output}", previous.output if previous else "")
    if isinstance(template, dict):
        return {k: render(v, item, previous) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, item, previous) for v in template]
    return template


# -- launching ----------------------------------------------------------------------------------
def kick(rt: Runtime, tenant: str, workflow_id: str) -> None:
    """Launch the first `concurrency` positions (idempotent: started or settled steps are skipped)."""
    wf = rt.store.get_workflow(tenant, workflow_id)
    session = rt.store.get_session(tenant, wf.session_id) if wf.n else None
    for position in range(min(wf.concurrency, wf.n)):
        launch(rt, wf, position, session)
    if wf.n == 0 and rt.store.finish_workflow(tenant, workflow_id, wf.attempt, "succeeded", when_all_done=True):
        telemetry.workflow_ended(tenant, workflow_id, "succeeded")


def launch(rt: Runtime, wf: Workflow, position: int, session: Session | None = None) -> None:
    """Start the step at `position`; a step that fails before it can run settles at once and
    passes its turn on, so the walk continues along this slot's chain of positions. `wf` is as
    read since the last step settled (the caller's); `session`, the workflow's, if at hand."""
    store = rt.store
    while position < wf.n:
        if wf.status != WorkflowStatus.RUNNING:
            return  # cancelled (or already finished): launch nothing more
        # Claim the step first: the write answers with the step, so it is not read before.
        slot = Step(tenant=wf.tenant, workflow_id=wf.workflow_id, key=wf.key_at(position), index=position,
                    attempt=wf.attempt, spec={})
        run_id = child_run_id(wf, slot, 0)
        step = store.move_step(slot, "pending", 0, "running", run_id, 0, None, rt.clock())
        if step is None:  # launched before (a replay), settled, or of another attempt
            step = store.get_step(wf.tenant, wf.workflow_id, slot.key)
            if step is None or step.attempt != wf.attempt or step.status != StepStatus.RUNNING:
                return
            if not step.run_id:
                wf = settle(rt, wf, step, failed_outcome(step, "step could not start"))
                position += wf.concurrency
                continue
            run_id = step.run_id  # a replay: make sure its child exists and is moving
        session = session or store.get_session(wf.tenant, wf.session_id)
        failure = preflight(rt, wf, step, session)
        if failure is None:
            start_child(rt, wf, step, step.spec, run_id, session)
            return
        wf = settle(rt, wf, step, failed_outcome(step, failure))
        position += wf.concurrency


def preflight(rt: Runtime, wf: Workflow, step: Step, session: Session) -> str | None:
    if rt.agent(step.spec.get("agent", ""), session) is None:
        return f"unknown agent {step.spec.get('agent')!r}: expected one of {', '.join(sorted(BUILTIN))}"
    if wf.budget_tokens is not None and wf.used_tokens >= wf.budget_tokens:
        return f"token budget exhausted ({wf.used_tokens} of {wf.budget_tokens} tokens used)"
    return None


def start_child(rt: Runtime, wf: Workflow, step: Step, spec: dict[str, Any], run_id: str,
                session: Session | None = None) -> None:
    session = session or rt.store.get_session(wf.tenant, wf.session_id)
    agent = rt.agent(spec.get("agent", ""), session)
    workspace = spec.get("workspace") or session.workspace
    refused = tenant_workspace.refusal(rt, wf.tenant, workspace) if spec.get("workspace") else None
    if agent is None or not str(spec.get("prompt", "")).strip() or refused:
        # A later pipeline stage's template can be wrong: that item fails, not every delivery.
        problem = (f"unknown agent {spec.get('agent')!r}" if agent is None else
                   refused or "the stage's spec has no prompt")
        on_child_failed_to_start(rt, wf, step, problem)
        return
    prompt = spec["prompt"] + (schema_contract(spec["output_schema"]) if spec.get("output_schema") else "")
    run = Run(tenant=wf.tenant, run_id=run_id, session_id=wf.session_id, prompt=prompt,
              model=session.model, workspace=workspace,
              max_turns=spec.get("max_steps") or agent.max_steps,
              messages=[{"role": "user", "content": prompt}],
              parent=StepRef(workflow_id=wf.workflow_id, key=step.key, attempt=step.attempt),
              agent=agent.name, allowed_tools=sorted(agent.tools), output_schema=spec.get("output_schema"))
    try:
        rt.store.create_run(run)
        telemetry.step_launched(wf, step, run_id)
        telemetry.run_queued(run)
    except Conflict:
        pass  # a replay: the run exists; enqueueing it again is harmless
    rt.queues.send_run(advance_message(wf.tenant, run_id))


# -- settling ---------------------------------------------------------------------------------
def on_child_failed_to_start(rt: Runtime, wf: Workflow, step: Step, error: str) -> None:
    current = settle(rt, wf, step, failed_outcome(step, error))
    launch(rt, current, step.position + current.concurrency)


def failed_outcome(step: Step, error: str) -> StepOutcome:
    task_id = step.spec.get("task_id", step.key)
    return StepOutcome(task_id=task_id, session_id=f"task-run-{task_id}", agent=step.spec.get("agent"),
                       success=False, output=error, error=error,
                       usage=Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0))


def run_outcome(step: Step, run: Run) -> StepOutcome:
    task_id = step.spec.get("task_id", step.key)
    ok = run.status == RunStatus.SUCCEEDED
    output = run.text if ok else (run.text or run.error or run.status)
    return StepOutcome(task_id=task_id, session_id=f"task-run-{task_id}", agent=step.spec.get("agent"),
                       success=ok, output=output[:OUTPUT_CAP], run_id=run.run_id,
                       usage=Usage(prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens,
                                   total_tokens=run.prompt_tokens + run.completion_tokens),
                       error=None if ok else (run.error or run.status), structured=run.structured)


def on_child_end(rt: Runtime, run: Run, session: Session | None = None) -> None:
    """A child run ended (or its end is being replayed): settle or continue its step. `session`:
    the workflow's, if the caller has it at hand."""
    ref = run.parent
    assert ref is not None
    store = rt.store
    wf, step = store.workflow_and_step(run.tenant, ref.workflow_id, ref.key)  # one read
    if step is None or step.attempt != ref.attempt or wf.attempt != ref.attempt:
        return  # a run of an earlier attempt
    outcome = run_outcome(step, run)
    if wf.kind == "pipeline" and wf.stages and outcome.success and step.stage + 1 < len(wf.stages) \
            and step.run_id == run.run_id:
        nxt = step.stage + 1
        spec = render(wf.stages[nxt], step.spec.get("item"), outcome)
        spec.setdefault("task_id", f"{step.key}-{nxt}")
        spec["item"] = step.spec.get("item")
        run_id = child_run_id(wf, step, nxt)
        step = store.move_step(step, "running", step.stage, "running", run_id, nxt, spec, rt.clock()) \
            or store.get_step(run.tenant, ref.workflow_id, ref.key) or step
        if step.run_id == run_id and wf.status == WorkflowStatus.RUNNING:
            start_child(rt, wf, step, spec, run_id, session)
        return
    if step.run_id != run.run_id:
        return  # an earlier stage's end replayed after the chain moved on
    current = settle(rt, wf, step, outcome)
    launch(rt, current, step.position + current.concurrency, session)


def settle(rt: Runtime, wf: Workflow, step: Step, outcome: StepOutcome) -> Workflow:
    """Settle the step and count it; the workflow as it stands after that."""
    store = rt.store
    status = "succeeded" if outcome.success else "failed"
    store.settle_step(step, status, outcome, outcome.usage.total_tokens, rt.clock())
    telemetry.step_settled(wf, step, status, outcome)
    current = store.get_workflow(wf.tenant, wf.workflow_id)
    push.publish_workflow(rt, wf.tenant, wf.workflow_id, {"step": step.key, "status": current.status,
                                                          "finished": current.finished, "total": current.n},
                          watched=current.watchers > 0)
    if current.status == WorkflowStatus.RUNNING and current.attempt == step.attempt and current.finished >= current.n:
        # This attempt's steps decide; the others were journaled successes, or are no longer asked for.
        ok = all(s.status == "succeeded" for s in store.list_steps(wf.tenant, wf.workflow_id)
                 if s.attempt == current.attempt)
        if store.finish_workflow(wf.tenant, wf.workflow_id, step.attempt, "succeeded" if ok else "failed",
                                 when_all_done=True):
            telemetry.workflow_ended(wf.tenant, wf.workflow_id, "succeeded" if ok else "failed")
            ended(rt, current)
    return current


# -- starting and reading ----------------------------------------------------------------------
def _step(tenant: str, wid: str, key: str, index: int, position: int, attempt: int, spec: dict) -> Step:
    return Step(tenant=tenant, workflow_id=wid, key=key, index=index, position=position, attempt=attempt,
                spec=spec, spec_hash=spec_hash(spec))


def start(rt: Runtime, tenant: str, session_id: str, kind: WorkflowKind, specs: list[dict[str, Any]],
          concurrency: int, budget_tokens: int | None = None, stages: list[dict] | None = None,
          workflow_id: str | None = None, parent_run_id: str | None = None,
          timeout_ms: int | None = None) -> dict[str, Any]:
    if kind == "resumable":
        return resume(rt, tenant, session_id, specs, concurrency, budget_tokens, workflow_id or "")
    wid = workflow_id or new_id("wf")
    keys = [f"{i:06d}" for i in range(len(specs))]
    steps = [_step(tenant, wid, keys[i], i, i, 1, spec) for i, spec in enumerate(specs)]
    wf = Workflow(tenant=tenant, workflow_id=wid, session_id=session_id, kind=kind, size=len(keys),
                  concurrency=concurrency, budget_tokens=budget_tokens, stages=stages,
                  parent_run_id=parent_run_id, deadline=rt.clock() + timeout_ms if timeout_ms else None)
    try:
        rt.store.create_workflow(wf, steps)
        telemetry.workflow_started(wf)
    except Conflict:
        if workflow_id is None:
            raise
        wf = rt.store.get_workflow(tenant, wid)  # a replayed delegation: it exists already
    rt.queues.send_run(workflow_message(tenant, wid))
    if wf.deadline is not None:
        rt.queues.send_run(WorkflowTimeout(tenant=tenant, workflow_id=wid),
                           math.ceil((wf.deadline - rt.clock()) / 1000))
    return {"workflow_id": wid, "status": wf.status, "attached": False}


def expire(rt: Runtime, tenant: str, workflow_id: str) -> None:
    """parallel_task's timeout: unfinished children are cancelled and count as failed."""
    wf = rt.store.get_workflow(tenant, workflow_id)
    if wf.status != WorkflowStatus.RUNNING or wf.deadline is None:
        return
    now = rt.clock()
    if now < wf.deadline:  # beyond SQS's 15-minute delay: chain another timer
        rt.queues.send_run(WorkflowTimeout(tenant=tenant, workflow_id=workflow_id),
                           math.ceil((wf.deadline - now) / 1000))
        return
    cancel(rt, tenant, workflow_id, status="timed_out")


def resume(rt: Runtime, tenant: str, session_id: str, specs: list[dict[str, Any]], concurrency: int,
           budget_tokens: int | None, wid: str) -> dict[str, Any]:
    """parallel_resumable: journaled successes are kept, everything else runs (again)."""
    store = rt.store
    ids = [s["task_id"] for s in specs]
    if len(set(ids)) != len(ids):
        raise BadRequest("parallel_resumable needs a distinct task_id for every spec")
    try:
        wf: Workflow | None = store.get_workflow(tenant, wid)
    except NotFound:  # a first run
        wf = None
    if wf is None:
        steps = [_step(tenant, wid, s["task_id"], i, i, 1, s) for i, s in enumerate(specs)]
        new = Workflow(tenant=tenant, workflow_id=wid, session_id=session_id, kind="resumable", order=ids,
                       size=len(ids), concurrency=concurrency, budget_tokens=budget_tokens)
        try:
            store.create_workflow(new, steps)
        except Conflict:
            return {"workflow_id": wid, "status": "running", "attached": True}
        telemetry.workflow_started(new)
        rt.queues.send_run(workflow_message(tenant, wid))
        return {"workflow_id": wid, "status": "running", "attached": False}
    if wf.status == WorkflowStatus.RUNNING:  # attach rather than start it twice (and make sure it moves)
        rt.queues.send_run(workflow_message(tenant, wid))
        return {"workflow_id": wid, "status": "running", "attached": True}
    journal = {s.key: s for s in store.list_steps(tenant, wid)}
    changed = [i for i in ids if i in journal and journal[i].status == "succeeded"
               and journal[i].spec_hash != spec_hash(next(s for s in specs if s["task_id"] == i))]
    if changed:
        return {"workflow_id": wid, "status": wf.status, "attached": False, "refused": (
            f"workflow {wid!r} cannot be resumed: the spec of journaled step(s) {', '.join(changed)} changed")}
    todo = [s for s in specs if not (s["task_id"] in journal and journal[s["task_id"]].status == "succeeded")]
    if not todo:  # every step is journaled: the recorded outcomes are the answer
        return {"workflow_id": wid, "status": wf.status, "attached": False}
    attempt = wf.attempt + 1
    reopened = wf.model_copy(update={"status": "running", "attempt": attempt, "finished": 0,
                                     "order": [s["task_id"] for s in todo], "size": len(todo),
                                     "concurrency": concurrency,
                                     "budget_tokens": budget_tokens, "used_tokens": 0})
    if not store.reopen_workflow(reopened, wf.attempt):
        return {"workflow_id": wid, "status": "running", "attached": True}  # another caller got there first
    index = {s["task_id"]: i for i, s in enumerate(specs)}
    # The journaled successes are written again as they are: each item's retention counts from its
    # last write, so the journal lives as long as the workflow it belongs to.
    kept = [journal[i] for i in ids if i in journal and journal[i].status == "succeeded"]
    store.put_steps([_step(tenant, wid, s["task_id"], index[s["task_id"]], p, attempt, s) for p, s in enumerate(todo)]
                    + kept)
    telemetry.workflow_started(reopened)
    rt.queues.send_run(workflow_message(tenant, wid))
    return {"workflow_id": wid, "status": "running", "attached": False}


def view(rt: Runtime, tenant: str, workflow_id: str) -> dict[str, Any]:
    """Status, outcomes in input order (None for a step not settled yet), and the step timeline."""
    wf = rt.store.get_workflow(tenant, workflow_id)
    steps = sorted(rt.store.list_steps(tenant, workflow_id), key=lambda s: s.index)
    history = []
    for s in steps:
        if s.started_at:
            history.append({"type": "step_started", "step": s.key, "ts": s.started_at})
        if s.finished_at and s.status in ("succeeded", "failed"):
            history.append({"type": "step_finished", "step": s.key, "ts": s.finished_at, "status": s.status})
    history.sort(key=lambda h: (h["ts"], h["type"] == "step_started"))
    return {"workflow_id": wf.workflow_id, "kind": wf.kind, "status": wf.status, "attempt": wf.attempt,
            "done": wf.status != WorkflowStatus.RUNNING, "total": len(steps),
            "finished": sum(1 for s in steps if s.status in ("succeeded", "failed")),
            "used_tokens": wf.used_tokens, "outcomes": [s.outcome.wire() if s.outcome else None for s in steps],
            "history": history}


def results(rt: Runtime, tenant: str, workflow_id: str) -> tuple[WorkflowStatus, list[StepOutcome | None]]:
    """The workflow's status and its steps' outcomes in input order (None for a step not settled)."""
    wf = rt.store.get_workflow(tenant, workflow_id)
    return wf.status, [s.outcome for s in sorted(rt.store.list_steps(tenant, workflow_id), key=lambda s: s.index)]


def steps_view(rt: Runtime, tenant: str, workflow_id: str) -> dict[str, Any]:
    """Every step of the current attempt with its timing: what a timeline or Gantt chart draws."""
    wf = rt.store.get_workflow(tenant, workflow_id)
    steps = sorted(rt.store.list_steps(tenant, workflow_id), key=lambda s: s.index)
    return {"workflow_id": wf.workflow_id, "status": wf.status, "steps": [
        {"key": s.key, "task_id": s.spec.get("task_id"), "index": s.index, "attempt": s.attempt, "status": s.status,
         "run_id": s.run_id,
         "started_at": s.started_at, "finished_at": s.finished_at, "agent": s.spec.get("agent"),
         "error": s.outcome.error if s.outcome and s.status == "failed" else None} for s in steps]}


def cancel(rt: Runtime, tenant: str, workflow_id: str, status: str = "cancelled") -> bool:
    """Stop launching steps and cancel the running ones' child runs (which cascade in turn)."""
    wf = rt.store.get_workflow(tenant, workflow_id)
    if not rt.store.finish_workflow(tenant, workflow_id, wf.attempt, status, when_all_done=False):
        return False
    for step in rt.store.list_steps(tenant, workflow_id):
        if step.status == StepStatus.RUNNING and step.run_id:
            rt.store.request_control(tenant, step.run_id, cancel=True)
            rt.wake(tenant, step.run_id) or rt.wake(tenant, step.run_id, from_status="paused")
    telemetry.workflow_ended(tenant, workflow_id, status)
    ended(rt, wf)
    return True


def ended(rt: Runtime, wf: Workflow) -> None:
    """A delegation tool's run waits on this workflow: it can go on now."""
    push.publish_workflow(rt, wf.tenant, wf.workflow_id, {"done": True})
    if wf.parent_run_id:
        rt.wake(wf.tenant, wf.parent_run_id)
