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
    ACTIVE_RUN,
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
from a3s_core.engine.messages import RunsMessage, WorkflowStart, WorkflowTimeout
from a3s_core.engine.queues import advance_message
from a3s_core.runtime import Runtime
from a3s_core.store.base import Settlement
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
    """Launch the first `concurrency` positions (idempotent: launched or settled steps are skipped)."""
    wf = rt.store.get_workflow(tenant, workflow_id)
    session = rt.store.get_session(tenant, wf.session_id) if wf.n else None
    first = range(min(wf.concurrency, wf.n))
    steps = rt.store.get_steps(tenant, workflow_id, [wf.key_at(p) for p in first])  # one read
    sends: list[RunsMessage] = []  # and their messages in batches
    for position in first:
        launch(rt, wf, position, session, steps.get(wf.key_at(position)), sends)
    rt.queues.send_runs(sends)
    if wf.n == 0 and rt.store.finish_workflow(tenant, workflow_id, wf.attempt, "succeeded", when_all_done=True):
        telemetry.workflow_ended(tenant, workflow_id, "succeeded")


def launch(rt: Runtime, wf: Workflow, position: int, session: Session | None = None, step: Step | None = None,
           sends: list[RunsMessage] | None = None) -> None:
    """Start the step at `position`; a step that fails before it can run settles at once and
    passes its turn on, so the walk continues along this slot's chain of positions. `wf` is as
    read since the last step settled (the caller's); `session` and `step`, if at hand; `sends`:
    where its run's message goes for the caller to send (else it is sent now).

    A step is launched by the creation of its child run, whose id is the step's (a replay finds
    the run it made): the step itself stays pending until its run's end settles it."""
    store = rt.store
    while position < wf.n:
        if wf.status != WorkflowStatus.RUNNING:
            return  # cancelled (or already finished): launch nothing more
        key = wf.key_at(position)
        if step is None or step.key != key:
            step = store.get_step(wf.tenant, wf.workflow_id, key)
        if step is None or step.attempt != wf.attempt or step.status != StepStatus.PENDING:
            return  # settled (a replay), at a later pipeline stage, or of another attempt
        session = session or store.get_session(wf.tenant, wf.session_id)
        failure = preflight(rt, wf, step, session)
        if failure is None:
            start_child(rt, wf, step, step.spec, child_run_id(wf, step, 0), session, sends=sends)
            return
        wf = settle(rt, wf, step, failed_outcome(step, failure))
        position, step = position + wf.concurrency, None


def preflight(rt: Runtime, wf: Workflow, step: Step, session: Session) -> str | None:
    if rt.agent(step.spec.get("agent", ""), session) is None:
        return f"unknown agent {step.spec.get('agent')!r}: expected one of {', '.join(sorted(BUILTIN))}"
    if wf.budget_tokens is not None and wf.used_tokens >= wf.budget_tokens:
        return f"token budget exhausted ({wf.used_tokens} of {wf.budget_tokens} tokens used)"
    return None


def start_child(rt: Runtime, wf: Workflow, step: Step, spec: dict[str, Any], run_id: str,
                session: Session | None = None, share: bool = True, sends: list[RunsMessage] | None = None) -> None:
    """Create the step's child run and have it driven; `session`: the workflow's, if at hand, sent
    with the run (`share`: as read by this invocation, not carried along from an earlier one).
    A run whose message is lost is found still queued by the sweeper, which sends it again."""
    shared = share and session is not None
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
    after = step.position + wf.concurrency
    # A pipeline's stages are read with its workflow when a stage ends; any other step's run says
    # in its own item all that its end needs to settle the step and launch the next in its slot.
    ref = StepRef(workflow_id=wf.workflow_id, key=step.key, attempt=step.attempt) if wf.stages else \
        StepRef(workflow_id=wf.workflow_id, key=step.key, attempt=step.attempt, settles=True,
                task_id=step.spec.get("task_id", step.key), position=step.position,
                agent=step.spec.get("agent") if step.spec.get("agent") != agent.name else None,
                next=wf.key_at(after) if after < wf.n else None)
    run = Run(tenant=wf.tenant, run_id=run_id, session_id=wf.session_id, prompt=prompt,
              model=session.model, workspace=workspace,
              max_turns=spec.get("max_steps") or agent.max_steps,
              messages=[{"role": "user", "content": prompt}], parent=ref,
              agent=agent.name, allowed_tools=sorted(agent.tools), output_schema=spec.get("output_schema"))
    try:
        rt.store.create_run(run)
        telemetry.step_launched(wf, step, run_id)
        telemetry.run_queued(run)
    except Conflict:
        pass  # a replay: the run exists; enqueueing it again is harmless
    message = advance_message(wf.tenant, run_id, session if shared else None)
    if sends is None:
        rt.queues.send_run(message)
    else:
        sends.append(message)


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


def settlement(run: Run, now: int) -> Settlement | None:
    """What the end of `run` settles in the same write: its step, if the run says all it needs."""
    ref = run.parent
    if ref is None or not ref.settles or not run.done:
        return None
    step = Step(tenant=run.tenant, workflow_id=ref.workflow_id, key=ref.key, index=0, position=ref.position,
                attempt=ref.attempt, spec={"task_id": ref.task_id or ref.key, "agent": ref.agent or run.agent},
                run_id=run.run_id, started_at=run.created_at)
    outcome = run_outcome(step, run)
    return Settlement(step, "succeeded" if outcome.success else "failed", outcome, outcome.usage.total_tokens, now)


def on_child_end(rt: Runtime, run: Run, session: Session | None = None, settled: bool = False) -> None:
    """A child run ended (or its end is being replayed): settle or continue its step. `session`:
    the workflow's, if the caller has it at hand; `settled`: the run's end settled its step."""
    ref = run.parent
    assert ref is not None
    store = rt.store
    if ref.settles:
        due = settlement(run, rt.clock())
        assert due is not None
        if not settled:  # ended by something else than its driver, or a replay: settle it now (once)
            settled = store.settle_step(*due)
        # One read after the count: the workflow, the next step of this slot, the session to run it in.
        current, nxt, fresh = store.workflow_with(run.tenant, ref.workflow_id, ref.next, run.session_id)
        if settled:
            telemetry.step_settled(current, due.step, due.status, due.outcome)
        if current.attempt != ref.attempt:
            return  # a run of an earlier attempt
        counted(rt, current, ref.key, ref.attempt)
        if ref.next is not None:
            launch(rt, current, ref.position + current.concurrency, fresh, nxt)
        return
    wf, step, _ = store.workflow_with(run.tenant, ref.workflow_id, ref.key)  # one read
    if step is None or step.attempt != ref.attempt or wf.attempt != ref.attempt:
        return  # a run of an earlier attempt
    if child_run_id(wf, step, step.stage) != run.run_id:
        return  # an earlier stage's end replayed after the chain moved on
    step.run_id, step.started_at = run.run_id, step.started_at or run.created_at
    outcome = run_outcome(step, run)
    if wf.kind == "pipeline" and wf.stages and outcome.success and step.stage + 1 < len(wf.stages):
        stage = step.stage + 1
        spec = render(wf.stages[stage], step.spec.get("item"), outcome)
        spec.setdefault("task_id", f"{step.key}-{stage}")
        spec["item"] = step.spec.get("item")
        run_id = child_run_id(wf, step, stage)
        step = store.move_step(step, step.status, step.stage, "running", run_id, stage, spec, run.created_at) \
            or store.get_step(run.tenant, ref.workflow_id, ref.key) or step
        if step.run_id == run_id and wf.status == WorkflowStatus.RUNNING:
            start_child(rt, wf, step, spec, run_id, session, share=False)  # the driver's read may be old
        return
    current = settle(rt, wf, step, outcome)
    launch(rt, current, step.position + current.concurrency, session)


def settle(rt: Runtime, wf: Workflow, step: Step, outcome: StepOutcome) -> Workflow:
    """Settle the step and count it; the workflow as it stands after that."""
    store = rt.store
    status = "succeeded" if outcome.success else "failed"
    if store.settle_step(step, status, outcome, outcome.usage.total_tokens, rt.clock()):
        telemetry.step_settled(wf, step, status, outcome)
    current = store.get_workflow(wf.tenant, wf.workflow_id)
    counted(rt, current, step.key, step.attempt)
    return current


def counted(rt: Runtime, current: Workflow, key: str, attempt: int) -> None:
    """Step `key` of `attempt` is counted on the workflow (read after): tell its watchers, and end
    it if that was the last."""
    push.publish_workflow(rt, current.tenant, current.workflow_id, {"step": key, "status": current.status,
                                                                    "finished": current.finished, "total": current.n},
                          watched=current.watchers > 0)
    if current.status == WorkflowStatus.RUNNING and current.attempt == attempt and current.finished >= current.n:
        # This attempt's steps decide; the others were journaled successes, or are no longer asked for.
        ok = all(s.status == "succeeded" for s in rt.store.list_steps(current.tenant, current.workflow_id)
                 if s.attempt == current.attempt)
        if rt.store.finish_workflow(current.tenant, current.workflow_id, attempt, "succeeded" if ok else "failed",
                                    when_all_done=True):
            telemetry.workflow_ended(current.tenant, current.workflow_id, "succeeded" if ok else "failed")
            ended(rt, current)


# -- starting and reading ----------------------------------------------------------------------
def _step(tenant: str, wid: str, key: str, index: int, position: int, attempt: int, spec: dict,
          journaled: bool = True) -> Step:
    """`journaled`: a resumable workflow's step, whose spec's hash tells a changed spec on resume."""
    return Step(tenant=tenant, workflow_id=wid, key=key, index=index, position=position, attempt=attempt,
                spec=spec, spec_hash=spec_hash(spec) if journaled else "")


def start(rt: Runtime, tenant: str, session_id: str, kind: WorkflowKind, specs: list[dict[str, Any]],
          concurrency: int, budget_tokens: int | None = None, stages: list[dict] | None = None,
          workflow_id: str | None = None, parent_run_id: str | None = None,
          timeout_ms: int | None = None) -> dict[str, Any]:
    if kind == "resumable":
        return resume(rt, tenant, session_id, specs, concurrency, budget_tokens, workflow_id or "")
    wid = workflow_id or new_id("wf")
    keys = [f"{i:06d}" for i in range(len(specs))]
    steps = [_step(tenant, wid, keys[i], i, i, 1, spec, journaled=False) for i, spec in enumerate(specs)]
    wf = Workflow(tenant=tenant, workflow_id=wid, session_id=session_id, kind=kind, size=len(keys),
                  concurrency=concurrency, budget_tokens=budget_tokens, stages=stages,
                  parent_run_id=parent_run_id, deadline=rt.clock() + timeout_ms if timeout_ms else None)
    try:
        rt.store.create_workflow(wf, steps, fresh=workflow_id is None)
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


def launched(rt: Runtime, wf: Workflow, steps: list[Step]) -> dict[str, tuple[str, str, int]]:
    """The steps of the workflow's attempt not settled whose child run exists: key -> (its run's id,
    status, creation time). One batched read of those runs (keys and two attributes)."""
    ids = {child_run_id(wf, s, s.stage): s.key for s in steps
           if s.attempt == wf.attempt and s.status in (StepStatus.PENDING, StepStatus.RUNNING)}
    return {ids[r]: (r, status, created) for r, (status, created) in rt.store.run_states(wf.tenant, list(ids)).items()}


def _as_they_stand(rt: Runtime, wf: Workflow, steps: list[Step]) -> list[Step]:
    """The steps in input order, a launched one shown running with its run (its item says so only
    once it settles)."""
    live = launched(rt, wf, steps)
    return sorted((s.model_copy(update={"status": StepStatus.RUNNING, "run_id": live[s.key][0],
                                        "started_at": s.started_at or live[s.key][2]}) if s.key in live else s
                   for s in steps), key=lambda s: s.index)


def view(rt: Runtime, tenant: str, workflow_id: str) -> dict[str, Any]:
    """Status, outcomes in input order (None for a step not settled yet), and the step timeline."""
    wf = rt.store.get_workflow(tenant, workflow_id)
    steps = _as_they_stand(rt, wf, rt.store.list_steps(tenant, workflow_id))
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
    steps = _as_they_stand(rt, wf, rt.store.list_steps(tenant, workflow_id))
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
    for run_id, run_status, _ in launched(rt, wf, rt.store.list_steps(tenant, workflow_id)).values():
        if run_status in ACTIVE_RUN:
            rt.store.request_control(tenant, run_id, cancel=True)
            rt.wake(tenant, run_id) or rt.wake(tenant, run_id, from_status="paused")
    telemetry.workflow_ended(tenant, workflow_id, status)
    ended(rt, wf)
    return True


def ended(rt: Runtime, wf: Workflow) -> None:
    """A delegation tool's run waits on this workflow: it can go on now."""
    push.publish_workflow(rt, wf.tenant, wf.workflow_id, {"done": True})
    if wf.parent_run_id:
        rt.wake(wf.tenant, wf.parent_run_id)
