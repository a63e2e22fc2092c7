"""The run driver: advances one agent run turn by turn, checkpointing after every step (the runs
queue's messages reach it through engine/dispatch.py).

A run never waits inside a Lambda. A tool on an external lane becomes a task; the run is saved
as `waiting` and the invocation ends. Whoever finishes the task (a worker's completion, or the
timeout message) wakes the run with a conditional write, and only the winner enqueues it again.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, NamedTuple

from a3s_core import telemetry
from a3s_core.domain import skills
from a3s_core.domain.errors import BadRequest, Conflict, Interrupted
from a3s_core.domain.items import (
    EVENT_OUTPUT_CHARS,
    Event,
    PendingCall,
    Run,
    RunStatus,
    Session,
    Task,
    TaskStatus,
    ToolOutcome,
)
from a3s_core.domain.lanes import LANES, LaneHandler, lane_for
from a3s_core.engine import delegation, lane_metrics, push, workflows
from a3s_core.engine.answers import parse_json_answer, storable
from a3s_core.engine.messages import timeout_message
from a3s_core.engine.queues import advance_message
from a3s_core.llm.base import ModelError
from a3s_core.llm.registry import get_model
from a3s_core.runtime import Runtime
from a3s_core.tools.builtin import TOOL_SCHEMAS, ToolError, run_tool
from a3s_core.tools.sandbox import CODE_TOOLS, within
from a3s_core.workspace.tenant import workspace_for

SYSTEM_PROMPT = ("You are a coding agent working in the user's workspace. Use the tools to inspect and "
                 "change files; answer concisely when the work is done.")
HANDOFF_MARGIN_MS = 5_000  # stop starting turns this close to the deadline (at most a fifth of it)


class _Stop(Exception):
    """A pause or cancel came before the tools the driver was about to run: the turn boundary first."""


class _CancelInstead(Exception):
    """A run about to end was cancelled meanwhile: it ends cancelled."""


class Awaited(NamedTuple):
    """What a waiting run waits on: an external task, or a child workflow, by id."""

    kind: Literal["task", "workflow"]
    id: str


def drive(rt: Runtime, run: Run, remaining_ms: Callable[[], int], session: Session | None = None) -> None:
    """Advance a run its lease has been taken for, turn by turn, until it waits, ends or hands off.
    `session`: the run's, as its launcher has just read it (then it is not read again)."""
    _Turns(rt, run, remaining_ms, session).go()


def task_id_for(run_id: str, call_id: str) -> str:
    """Deterministic, so a replayed turn finds the task it made before instead of making another."""
    return "task-" + hashlib.sha256(f"{run_id}/{call_id}".encode()).hexdigest()[:20]


def outcome_of(task: Task, handler: LaneHandler) -> ToolOutcome | None:
    """The tool result the model sees for a finished task (None: run it internally instead)."""
    if task.status == TaskStatus.COMPLETED:
        output = (task.result or {}).get("output")
        if not isinstance(output, str):  # a result of any other shape reaches the model as JSON
            output = (json.dumps(task.result, separators=(",", ":"), ensure_ascii=False) if task.result
                      else "(no result)")
        code = (task.result or {}).get("exit_code")
        suffix = f"\n[exit code {code}]" if isinstance(code, int) and code != 0 else ""
        return ToolOutcome(content=output + suffix, is_error=isinstance(code, int) and code != 0)
    if task.status == TaskStatus.FAILED:
        return ToolOutcome(content=f"external task failed: {task.error or 'no error given'}", is_error=True)
    if task.status == TaskStatus.TIMED_OUT:
        if handler.on_timeout == "internal":
            return None
        return ToolOutcome(content=f"external task {task.task_id} timed out after {task.timeout_ms} ms",
                           is_error=True)
    return ToolOutcome(content=f"external task {task.task_id} was cancelled", is_error=True)


class _Turns:
    """One invocation's work on a leased run."""

    def __init__(self, rt: Runtime, run: Run, remaining_ms: Callable[[], int], session: Session | None = None) -> None:
        self.rt, self.run, self.remaining_ms = rt, run, remaining_ms
        self.events: list[Event] = []
        self.answer_unsaved = False  # the model answered and the answer is not checkpointed yet
        self.interrupted = False     # a request from outside came during this invocation
        self.announce: list[Task] = []  # tasks made since the last checkpoint: pushed once it commits
        self.settled = False  # the last checkpoint settled the run's step (a child run's end)
        if run.history is None:  # its first pick-up: it continues the conversation as it is now
            self.session, self.history, run.history = rt.store.session_with_history(run.tenant, run.session_id)
            self.prefetched: dict[str, Task] = {}
        else:  # the session and the tasks this turn waits on, in one read (a wake's usual question)
            awaited = [t for c in run.pending if c.outcome is None for t in (c.task_id, c.confirm_task_id) if t]
            if session is not None and session.session_id == run.session_id and not awaited:
                self.session, self.prefetched = session, {}
            else:
                self.session, self.prefetched = rt.store.session_and_tasks(run.tenant, run.session_id, awaited)
            self.history = rt.store.history(run.tenant, run.session_id, run.history)  # what the run continues
        self._skills: dict[str, dict[str, str]] | None = None
        if run.event_seq == 0:  # its first pick-up: the run is created without events (one write)
            step = {"workflow_id": run.parent.workflow_id, "step": run.parent.key, "agent": run.agent} \
                if run.parent else {}
            self.emit("run_start", session_id=run.session_id, **step)

    def skills(self) -> dict[str, dict[str, str]]:
        if self._skills is None:
            self._skills = skills.catalogue(self.session.builtin_skills, self.rt.settings.skills_json,
                                            self.session.skills)
        return self._skills

    # -- bookkeeping ---------------------------------------------------------------------
    def emit(self, type_: str, **data: Any) -> None:
        self.run.event_seq += 1
        self.events.append(Event(seq=self.run.event_seq, type=type_, data=data))

    def checkpoint(self, append: bool = False, cancellable: bool = False, boundary: bool = False) -> None:
        """Save the run. `cancellable`: a cancel that came meanwhile raises _CancelInstead; `boundary`:
        a cancel or pause raises _Stop (nothing saved: the caller undoes what it began)."""
        self.run.updated_at = self.rt.clock()
        for _ in range(10):
            try:
                # A child run's end settles its step in the same write (if its item says all it needs).
                settle = workflows.settlement(self.run, self.run.updated_at)
                self.settled = self.rt.store.save_run(self.run, self.events, append_to=self.session if append else None,
                                                      settle=settle)
                break
            except Interrupted:  # a request from outside came: the run holds it now; save again with it
                self.interrupted = True
                if cancellable and self.run.control.cancel:
                    raise _CancelInstead() from None
                if boundary and (self.run.control.cancel or self.run.control.pause):
                    raise _Stop() from None
        else:
            raise Conflict(f"run {self.run.run_id} keeps changing underneath")
        # committed first, then pushed (engine/push.py)
        push.publish_run(self.rt, self.run, self.events, session_watchers=self.session.watching)
        # A worker told of a task only now finds its run suspended (or past the tool's start): its
        # completion wakes the run, rather than nudging a driver that has not saved yet.
        for task in self.announce:
            push.publish_task(self.rt, task)
        self.events, self.answer_unsaved, self.announce = [], False, []

    def release(self, status: str, append: bool = False, cancellable: bool = False) -> None:
        self.run.status, self.run.lease_owner, self.run.lease_until = RunStatus(status), None, 0
        self.checkpoint(append, cancellable)

    def finish(self, status: str, stop_reason: str, text: str = "", error: str | None = None) -> None:
        before = self.run.text, self.run.error, self.run.stop_reason
        self.run.text, self.run.error, self.run.stop_reason = text, error, stop_reason
        run = self.run  # its usage too: a client's wait needs nothing else (no read of the run)
        self.emit("run_end", status=status, stop_reason=stop_reason, text=text, error=error,
                  tool_calls_count=run.tool_calls_count, prompt_tokens=run.prompt_tokens,
                  completion_tokens=run.completion_tokens)
        # A top-level run that succeeded adds its exchange to the session's conversation, in the
        # same write that ends it: the session's next run continues from there.
        try:
            self.release(status, append=status == "succeeded" and self.run.parent is None,
                         cancellable=status != "cancelled")
        except _CancelInstead:  # cancelled while it was finishing (say, while the model answered)
            self.events.pop()
            self.run.event_seq -= 1
            self.run.text, self.run.error, self.run.stop_reason = before
            return self.cancel()
        telemetry.run_ended(self.run)
        if self.run.parent:
            workflows.on_child_end(self.rt, self.run, self.session, settled=self.settled)

    # -- the loop ------------------------------------------------------------------------
    def go(self) -> None:
        try:
            self._loop()
        except Conflict:
            return  # our lease was taken over (we were too slow): the new holder carries on

    def _loop(self) -> None:
        run = self.run
        while True:
            control = run.control  # a turn boundary: as of our last read or write of the run
            if control.cancel:
                return self.cancel()
            if control.pause:
                self.emit("control_signal_applied", signal="pause")
                self.release("paused")
                telemetry.run_suspended(run, "paused")
                # A resume or cancel that came while we paused could not wake us: we saw it (Interrupted).
                if run.control.cancel or not run.control.pause:
                    self.rt.wake(run.tenant, run.run_id, from_status="paused")
                return
            delegation.report_background(self)
            if run.pending:
                try:
                    if self.resolve_pending():
                        return
                except _Stop:  # asked to pause or cancel before the tools ran: that first
                    pass
                continue
            if run.turn >= run.max_turns:
                return self.finish("failed", "max_turns", error=f"stopped after {run.max_turns} turns (max_turns)")
            if self.remaining_ms() < self.margin_ms():
                self.emit("run_handoff", turn=run.turn)  # a fresh invocation takes over before the deadline
                self.release("queued")
                self.rt.queues.send_run(advance_message(run.tenant, run.run_id))
                telemetry.run_handed_off(run)
                return
            if not self.model_turn(control.injections):
                return

    def model_turn(self, injections: list[str]) -> bool:
        run = self.run
        for text in injections[run.injected:]:  # the model sees injected prompts on this turn
            run.messages.append({"role": "user", "content": text})
            self.emit("control_signal_applied", signal="inject", text=text[:2000])
        run.injected = max(run.injected, len(injections))
        self.emit("turn_start", turn=run.turn + 1)
        tools = [t for name, t in TOOL_SCHEMAS.items() if run.allowed_tools is None or name in run.allowed_tools]
        if run.parent is None:  # only top-level runs delegate: children never nest
            tools += list(delegation.SCHEMAS.values())
        if self.skills():
            tools.append(skills.schema(self.skills()))
        agent = self.rt.agent(run.agent, self.session) if run.agent else None
        system = agent.system_prompt() if agent else SYSTEM_PROMPT
        try:
            model = get_model(run.model)
            with telemetry.model_call(run):
                resp = model.complete(self.history + run.messages, tools, system, output_schema=run.output_schema)
        except Exception as err:  # whatever an adapter raises ends this run, not the delivery
            telemetry.model_failed(run, err)
            detail = str(err) if isinstance(err, ModelError) else f"{type(err).__name__}: {err}"
            self.finish("failed", "model_error", error=f"model error: {detail}")
            return False
        run.turn += 1
        run.prompt_tokens += resp.usage.prompt_tokens
        run.completion_tokens += resp.usage.completion_tokens
        text = storable(resp.text)
        calls = [c.to_dict() for c in resp.tool_calls]
        telemetry.model_answered(run, resp.usage.prompt_tokens, resp.usage.completion_tokens, len(calls))
        clean = storable(calls)
        run.messages.append({"role": "assistant", "content": text, "tool_calls": clean})
        if text:
            self.emit("text", text=text)
        if not calls:
            self.emit("turn_end", turn=run.turn)
            if run.output_schema is not None:
                return self.structured_answer(text)
            self.finish("succeeded", "end_turn", text=text)
            return False
        run.tool_calls_count += len(calls)
        run.pending = []
        for c, raw in zip(clean, calls, strict=True):
            call = PendingCall(id=c["id"], name=c["name"], arguments=c["arguments"], lane=lane_for(c["name"]))
            if c != raw:  # not what the model sent: refuse it rather than run it with U+FFFD in it
                call.outcome = ToolOutcome(is_error=True, content=(
                    f"invalid arguments for {c['name']}: a string is not valid Unicode text (it holds a lone "
                    "surrogate, half of a UTF-16 pair); nothing was run"))
            run.pending.append(call)
        # Not saved yet: the same invocation goes on to the calls, and what it does first saves the
        # answer with it (a tool's start, or the suspend that makes its tasks). A crash before then
        # asks the model again; at worst a task made for the lost answer is done for nothing.
        self.answer_unsaved = True
        return True

    def cancel(self) -> None:
        """Cancel this run and everything it started: its pending tasks (which then cannot be
        completed) and its child workflows (whose running children are cancelled in turn)."""
        run = self.run
        now = self.rt.clock()
        for call in run.pending:
            for task_id, lane in ((call.task_id, call.lane), (call.confirm_task_id, "control")):
                if task_id and self.rt.store.finish_task(run.tenant, run.session_id, task_id, "cancelled", now):
                    telemetry.task_cancelled(run, task_id, lane)
                    if self.session.enable_all_features:
                        self.rt.store.add_lane_metrics(run.tenant, run.session_id, lane,
                                                       lane_metrics.counters("cancelled", None, None))
        for workflow_id in run.children:
            workflows.cancel(self.rt, run.tenant, workflow_id)
        self.emit("control_signal_applied", signal="cancel")
        self.finish("cancelled", "cancelled", text=run.text, error="cancelled by request")

    def structured_answer(self, text: str) -> bool:
        """Validate the answer against the step's schema: one repair turn, then a clear failure."""
        import jsonschema  # only a step with an output schema needs it: not at every cold start

        run = self.run
        try:
            value = parse_json_answer(text)
            jsonschema.validate(value, run.output_schema or {})
        except (ValueError, jsonschema.ValidationError, jsonschema.SchemaError) as err:
            problem = err.message if isinstance(err, jsonschema.ValidationError) else str(err)
            if not run.repaired:
                run.repaired = True
                run.messages.append({"role": "user", "content": (
                    f"Your answer does not satisfy the required JSON Schema ({problem}). Reply again with "
                    "only the JSON value.")})
                self.checkpoint()
                return True
            self.finish("failed", "end_turn", text=f"{text}\n[structured output failed: {problem}]",
                        error=f"structured output failed: {problem}")
            return False
        run.structured = value
        self.finish("succeeded", "end_turn", text=text)
        return False

    def resolve_pending(self) -> bool:
        """Run or dispatch this turn's tool calls. True when the run is now suspended."""
        run, session = self.run, self.session
        waiting: list[Awaited] = []
        if self.answer_unsaved and any(c.name in delegation.TOOLS for c in run.pending):
            self.checkpoint()  # a child workflow is work of its own: the answer that asks for it comes first
        for lane in LANES:
            internal: list[PendingCall] = []
            for call in (c for c in run.pending if c.lane == lane and c.outcome is None):
                handler = session.lanes[lane]
                if call.name == skills.NAME and self.skills():
                    call.outcome = skills.use(self.skills(), call.arguments)
                    continue
                if call.name in delegation.TOOLS:
                    workflow_id = delegation.delegate(self, call)
                    if workflow_id:
                        waiting.append(Awaited("workflow", workflow_id))
                    continue
                if run.allowed_tools is not None and call.name not in run.allowed_tools:
                    call.outcome = ToolOutcome(content=f"tool {call.name!r} is not available to the "
                                               f"{run.agent} agent", is_error=True)
                    continue
                if call.task_id and not call.fallback:
                    task = self.finished(call.task_id, call)
                    if task is None:
                        waiting.append(Awaited("task", call.task_id))
                        continue
                    call.outcome = outcome_of(task, handler)
                    if call.outcome is not None:
                        continue
                    call.fallback = True  # on_timeout: internal, which asks like any internal tool
                if self.needs_approval(call, handler):
                    approval = self.approval(call)
                    if approval == "waiting":
                        waiting.append(Awaited("task", call.confirm_task_id or ""))
                    if approval != "approved":
                        continue
                if not handler.policy.runs_here and not call.fallback:
                    call.task_id = self.dispatch(call, lane, call.name, call.arguments, handler.timeout_ms)
                    waiting.append(Awaited("task", call.task_id))
                else:
                    internal.append(call)
            if internal:
                self.run_internal(internal, session.concurrency.get(lane, 1))
        if waiting:
            self.suspend(waiting)
            return True
        for call in run.pending:
            outcome = call.outcome
            if outcome is None:  # nothing is waiting, so every call has its outcome by now
                raise RuntimeError(f"tool call {call.id} ({call.name}) has no outcome at the end of its turn")
            run.messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                                 "content": outcome.content, "is_error": outcome.is_error})
            if not call.reported:  # done elsewhere (a worker, subagents) or refused
                self.emit("tool_end", tool=call.name, call_id=call.id, is_error=outcome.is_error,
                          output=outcome.content[:EVENT_OUTPUT_CHARS])
        run.pending = []
        self.emit("turn_end", turn=run.turn)  # saved with the next turn's answer: nothing happens in between
        return False

    def finished(self, task_id: str, call: PendingCall) -> Task | None:
        """The task if it is final (recording that in the history), else None."""
        task = self.prefetched.pop(task_id, None)  # read with the session, once: later asks read again
        if task is None:
            task = self.rt.store.get_task(self.run.tenant, self.run.session_id, task_id)
        if task is None or task.status == TaskStatus.PENDING:
            return None
        self.emit("external_task_completed", task_id=task.task_id, status=task.status, tool=call.name,
                  command_type=task.command_type, success=task.status == TaskStatus.COMPLETED)
        return task

    def needs_approval(self, call: PendingCall, handler: LaneHandler) -> bool:
        """Outside permissive mode, a tool that changes things runs only once someone approves it:
        when the kit runs it (internally, or as a fallback after a timeout) and when the kit's own
        lane worker would. Other external workers are the deployer's to judge."""
        if self.session.permissive or call.lane != "execute" or call.approved:
            return False
        return handler.policy.runs_here or call.fallback or self.rt.settings.lane_worker

    def approval(self, call: PendingCall) -> str:
        """Ask on the control lane (a `confirm` task), or read the answer: waiting|approved|denied."""
        if call.confirm_task_id is None:
            timeout = self.session.lanes["control"].timeout_ms
            call.confirm_task_id = self.dispatch(call, "control", "confirm",
                                                 {"tool": call.name, "arguments": call.arguments}, timeout,
                                                 key=f"{call.id}/confirm")
            return "waiting"
        task = self.finished(call.confirm_task_id, call)
        if task is None:
            return "waiting"
        if task.status == TaskStatus.COMPLETED and (task.result or {}).get("approved", True) is True:
            call.approved = True
            return "approved"
        reason = {"timed_out": f"no answer within {task.timeout_ms} ms (timed out)",
                  "cancelled": "the request was cancelled"}.get(task.status, task.error or "denied")
        call.outcome = ToolOutcome(content=f"permission denied for {call.name}: {reason}", is_error=True)
        return "denied"

    def run_internal(self, calls: list[PendingCall], concurrency: int) -> None:
        workspace, refused = None, ""
        try:
            workspace = workspace_for(self.rt, self.run.tenant, self.run.workspace)
        except BadRequest as err:  # checked when the run was made; a tool error if it still fails
            refused = str(err)
        hybrid = self.session.lanes[calls[0].lane].policy.announces
        mark, seq = len(self.events), self.run.event_seq
        for call in calls:
            if hybrid:
                self.emit("external_task_pending", task_id=None, lane=call.lane, command_type=call.name,
                          hybrid=True)
            self.emit("tool_start", tool=call.name, call_id=call.id, lane=call.lane)
        try:  # watchers see the tools start (and a hybrid lane's notice) before they end
            self.checkpoint(boundary=True)
        except _Stop:  # a pause or cancel came since the model answered: no tool has started
            del self.events[mark:]
            self.run.event_seq = seq
            raise

        sandbox = self.rt.tool_sandbox()
        began, timings = self.rt.clock(), {}

        def one(call: PendingCall) -> ToolOutcome:
            start = self.rt.clock()
            with telemetry.tool_call(self.run.tenant, self.run.run_id, call.name, call.lane):
                outcome = execute(call)
            timings[call.id] = (start - began, self.rt.clock() - start)  # waited for a slot, ran
            return outcome

        def execute(call: PendingCall) -> ToolOutcome:
            if workspace is None:
                return ToolOutcome(content=refused, is_error=True)
            try:
                if call.name in CODE_TOOLS:
                    result = sandbox.run_tool(self.run.tenant, call.name, self.within_deadline(call.arguments),
                                              workspace)
                else:
                    result = run_tool(call.name, call.arguments, workspace)
            except ToolError as err:
                return ToolOutcome(content=str(err), is_error=True)
            except Exception as err:  # a failure around the tool is still this call's error
                return ToolOutcome(content=f"{call.name} failed: {type(err).__name__}: {err}", is_error=True)
            code = result.get("exit_code")
            suffix = f"\n[exit code {code}]" if code not in (None, 0) else ""
            return ToolOutcome(content=result["output"] + suffix, is_error=code not in (None, 0))

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            outcomes = list(pool.map(one, calls))
        # counted here: metrics belong to this invocation's context
        for call, outcome in zip(calls, outcomes, strict=True):
            telemetry.tool_ended(call.name, call.lane, timings[call.id][1], outcome.is_error)
        if self.session.enable_all_features:
            counts: dict[str, int] = {}
            for call, outcome in zip(calls, outcomes, strict=True):
                lane_metrics.merge(counts, lane_metrics.counters("failed" if outcome.is_error else "completed",
                                                                 *timings[call.id]))
            self.rt.store.add_lane_metrics(self.run.tenant, self.run.session_id, calls[0].lane, counts)
        for call, outcome in zip(calls, outcomes, strict=True):
            call.outcome, call.reported = outcome, True
            self.emit("tool_end", tool=call.name, call_id=call.id, is_error=outcome.is_error,
                      output=outcome.content[:EVENT_OUTPUT_CHARS])
            if hybrid:
                self.emit("external_task_completed", task_id=None, tool=call.name, hybrid=True,
                          is_error=outcome.is_error)
        self.checkpoint()  # a tool that finished is never run again by a replay

    def margin_ms(self) -> int:
        """How close to the deadline no new work starts (at most a fifth of the lease)."""
        return min(HANDOFF_MARGIN_MS, self.rt.settings.lease_seconds * 200)

    def within_deadline(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """A command may not outlive this invocation: a driver killed mid-tool would run it again."""
        return within(arguments, max(1_000, self.remaining_ms() - 2 * self.margin_ms()))  # and time to move files

    def dispatch(self, call: PendingCall, lane: str, command_type: str, payload: dict, timeout_ms: int,
                 key: str | None = None) -> str:
        """Make an external task for the call on `lane`, and announce it; returns its id."""
        run, now = self.run, self.rt.clock()
        task = Task(tenant=run.tenant, session_id=run.session_id, task_id=task_id_for(run.run_id, key or call.id),
                    run_id=run.run_id, call_id=call.id, lane=lane, command_type=command_type, payload=payload,
                    timeout_ms=timeout_ms, created_at=now, deadline=now + timeout_ms,
                    approved=call.approved or self.session.permissive, metrics=self.session.enable_all_features)
        # On a replay the task exists already; its messages are sent again in case the crash came
        # before they were, and a duplicate is harmless (claims and timeouts are conditional).
        if self.rt.store.create_task(task):
            telemetry.task_created(task)
            self.announce.append(task)
        self.rt.queues.send_lane(lane, {"tenant": run.tenant, **task.public()})
        self.rt.queues.send_run(timeout_message(task), math.ceil(timeout_ms / 1000))
        self.emit("external_task_pending", task_id=task.task_id, lane=lane, command_type=command_type,
                  timeout_ms=timeout_ms)
        return task.task_id

    def suspend(self, waiting: list[Awaited]) -> None:
        run = self.run
        self.release("waiting")
        telemetry.run_suspended(run, "waiting", len(waiting))
        # Whatever finished (a task, a child workflow) or was asked (pause, cancel) while we held
        # the run could not wake it: it nudged the run instead, and a checkpoint of ours saw that
        # (Interrupted). Then look again, in a fresh invocation.
        if self.interrupted:
            self.rt.wake(run.tenant, run.run_id)
