"""What operators see: each transition of the engine is one call here, which logs it once (Powertools
Logger: a JSON line with the ids it concerns) and counts it (Powertools Metrics: CloudWatch EMF);
model and tool calls are traced (Powertools Tracer: X-Ray subsegments).

Metrics are kept per handler invocation (`invocation()`, a context variable, so the embedded
stack's concurrent invocations never mix) and flushed once at its end, one EMF line per set of
dimensions; engine code run outside an invocation (unit tests) records none. Dimensions are
bounded sets (model, lane, tool, status, stop reason), never a run or session id: ids go in the logs.
Nothing is built at import time; off AWS the tracer disables itself (no Lambda, or
POWERTOOLS_TRACE_DISABLED) and costs a few microseconds a call.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

# Every metric: its unit and dimensions (besides `service`, which Powertools adds: the stack name).
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "RunsStarted": ("Count", ()),
    "RunsEnded": ("Count", ("StopReason",)),
    "RunErrors": ("Count", ()),             # ended with model_error or internal_error
    "RunsRedriven": ("Count", ()),          # the sweeper queued a run again (its message was lost)
    "Turns": ("Count", ("Model",)),
    "PromptTokens": ("Count", ("Model",)),
    "CompletionTokens": ("Count", ("Model",)),
    "ModelLatency": ("Milliseconds", ("Model",)),
    "ToolCalls": ("Count", ("Tool", "Lane")),
    "ToolErrors": ("Count", ("Tool", "Lane")),
    "ToolLatency": ("Milliseconds", ("Tool", "Lane")),
    "TaskWaitTime": ("Milliseconds", ("Lane",)),  # an external task, from created to claimed
    "TasksEnded": ("Count", ("Lane", "Status")),  # completed, failed, timed_out, cancelled
    "StepsLaunched": ("Count", ()),
    "StepsSettled": ("Count", ("Status",)),
    "WorkflowsEnded": ("Count", ("Status",)),
    "MessagesGivenUp": ("Count", ()),
    "InternalErrors": ("Count", ()),        # HTTP requests answered 500
}
# What every Tracer patches: AWS calls (botocore) and the model's HTTPS calls (http.client). Its
# default, every library X-Ray knows, imports and wraps ones the kit never calls at each cold start.
TRACED_MODULES = ("botocore", "httplib")
ERROR_STOP_REASONS = frozenset({"model_error", "internal_error"})  # the kit's failures, not the agent's
_OTHER_TOOL = "other"

_parts: dict[Any, Any] = {}
_parts_lock = threading.Lock()
_metrics: ContextVar[dict[tuple[tuple[str, str], ...], Any] | None] = ContextVar("a3s_metrics", default=None)
_flow = threading.local()  # the trace header of the message being handled on this thread


def logger() -> Any:
    """The service's Powertools Logger (the one every function's handler configures)."""
    service = os.environ.get("POWERTOOLS_SERVICE_NAME") or "service_undefined"
    found = _parts.get(("logger", service))
    if found is None:
        from aws_lambda_powertools import Logger

        with _parts_lock:
            found = _parts.setdefault(("logger", service), Logger(service=service))
    return found


def tracer() -> Any:
    if "tracer" not in _parts:
        from aws_lambda_powertools import Tracer

        with _parts_lock:
            _parts.setdefault("tracer", Tracer(patch_modules=TRACED_MODULES))
    return _parts["tracer"]


# -- handler plumbing ---------------------------------------------------------------------------
@contextlib.contextmanager
def invocation() -> Iterator[None]:
    """One handler invocation: metrics recorded inside are flushed at its end, whatever happens."""
    token = _metrics.set({})
    try:
        yield
    finally:
        try:
            flush()
        finally:
            _metrics.reset(token)


def instrumented(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Decorator form of invocation() for a Lambda handler."""
    def wrapped(event: Any, context: Any) -> Any:
        with invocation():
            return handler(event, context)

    wrapped.__name__, wrapped.__doc__ = handler.__name__, handler.__doc__
    return wrapped


def flush() -> None:
    """Print this invocation's metrics as EMF; nothing (and no warning) when there are none."""
    sets = _metrics.get()
    if not sets:
        return
    for metrics in sets.values():
        if metrics.metric_set:
            metrics.flush_metrics()
    sets.clear()  # POWERTOOLS_METRICS_DISABLED keeps them in the object: drop them here


def correlate(**ids: Any) -> None:
    """Ids that every log line of this thread carries from now on (until the next correlate)."""
    log = logger()
    log.thread_safe_clear_keys()
    keys = {k: v for k, v in ids.items() if v}
    if keys:
        log.thread_safe_append_keys(**keys)


@contextlib.contextmanager
def sqs_record(record: Any, body: dict[str, Any] | None,
               deferred: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Handling one SQS record: its ids and its flow's trace go on every log line and on every message
    sent meanwhile (so a run's round trip through the queues stays one trace), and a failure is
    logged with its exception before SQS is asked to deliver the record again (`deferred`:
    exceptions that only mean "later", logged at INFO without a trace)."""
    body = body if isinstance(body, dict) else {}
    header = (record.attributes.aws_trace_header if record is not None else None) or None
    _flow.header = header
    correlate(tenant=body.get("tenant"), session_id=body.get("session_id"), run_id=body.get("run_id"),
              task_id=body.get("task_id"), workflow_id=body.get("workflow_id"), message_kind=body.get("kind"),
              message_id=getattr(record, "message_id", None), flow_trace_id=_root(header))
    try:
        yield
    except Exception as err:
        later = isinstance(err, deferred)
        (logger().info if later else logger().warning)(
            f"record deferred: {err}" if later else "record failed; it will be delivered again",
            exc_info=not later,
            extra={"receive_count": int(record.attributes.approximate_receive_count or 0) if record else 0})
        raise
    finally:
        _flow.header = None


def trace_header() -> str | None:
    """The X-Ray header a message sent now carries: the flow's (the record being handled), else this
    invocation's own (Lambda sets _X_AMZN_TRACE_ID), else none (off AWS)."""
    return getattr(_flow, "header", None) or os.environ.get("_X_AMZN_TRACE_ID") or None


def _root(header: str | None) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.partition("=")
        if key.strip() == "Root":
            return value.strip()
    return None


# -- metrics --------------------------------------------------------------------------------------
def metric(name: str, value: float, **dimensions: str) -> None:
    unit, names = METRICS[name]
    if set(dimensions) != set(names):
        raise ValueError(f"metric {name} takes dimensions {names}, got {sorted(dimensions)}")
    sets = _metrics.get()
    if sets is None:
        return
    key = tuple(sorted(dimensions.items()))
    metrics = sets.get(key)
    if metrics is None:
        from aws_lambda_powertools.metrics import EphemeralMetrics

        metrics = EphemeralMetrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "A3S")
        for dim, dim_value in key:
            metrics.add_dimension(name=dim, value=str(dim_value))
        sets[key] = metrics
    metrics.add_metric(name=name, unit=unit, value=value)


def tool_dimension(name: str) -> str:
    """A model may name any tool: unknown names share one value, so the dimension stays bounded."""
    from a3s_core.domain.catalogue import CATALOGUE

    return name if name in CATALOGUE else _OTHER_TOOL


def _info(transition: str, message: str, **fields: Any) -> None:
    logger().info(message, extra={"transition": transition, **{k: v for k, v in fields.items() if v is not None}})


def _run_ids(run: Any) -> dict[str, Any]:
    ids = {"tenant": run.tenant, "session_id": run.session_id, "run_id": run.run_id}
    if getattr(run, "parent", None) is not None:
        ids["workflow_id"] = run.parent.workflow_id
    return ids


# -- runs -----------------------------------------------------------------------------------------
def run_queued(run: Any) -> None:
    _info("run_queued", "run queued", **_run_ids(run), model=run.model, agent=run.agent)


def run_started(run: Any) -> None:
    _info("run_started", "run started", **_run_ids(run), model=run.model, agent=run.agent)
    metric("RunsStarted", 1)


def run_resumed(tenant: str, run_id: str, from_status: str) -> None:
    _info("run_resumed", "run resumed", tenant=tenant, run_id=run_id, from_status=from_status)


def run_suspended(run: Any, status: str, waiting: int = 0) -> None:
    """The invocation ends with the run waiting (on tasks or children) or paused."""
    _info("run_suspended", f"run {status}", **_run_ids(run), status=status, waiting_on=waiting or None,
          turns=run.turn)


def run_handed_off(run: Any) -> None:
    _info("run_handed_off", "run handed off", **_run_ids(run), turns=run.turn)


def run_ended(run: Any) -> None:
    fields = {**_run_ids(run), "status": run.status, "stop_reason": run.stop_reason, "turns": run.turn,
              "prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens,
              "tool_calls": run.tool_calls_count, "duration_ms": max(0, run.updated_at - run.created_at)}
    if run.stop_reason in ERROR_STOP_REASONS:
        logger().error("run ended", extra={"transition": "run_ended", **fields, "error": run.error})
        metric("RunErrors", 1)
    elif run.status == "failed":
        logger().warning("run ended", extra={"transition": "run_ended", **fields, "error": run.error})
    else:
        _info("run_ended", "run ended", **fields)
    metric("RunsEnded", 1, StopReason=run.stop_reason or "none")


# -- model and tool calls ------------------------------------------------------------------------
@contextlib.contextmanager
def model_call(run: Any) -> Iterator[None]:
    """A traced model call; its latency is recorded whether it answers or raises."""
    started = time.monotonic()
    with tracer().provider.in_subsegment("## model") as segment:
        segment.put_annotation("tenant", run.tenant)
        segment.put_annotation("run_id", run.run_id)
        segment.put_annotation("model", run.model)
        try:
            yield
        finally:
            metric("ModelLatency", (time.monotonic() - started) * 1000, Model=run.model)


def model_answered(run: Any, prompt_tokens: int, completion_tokens: int, tool_calls: int) -> None:
    logger().debug("model answered", extra={**_run_ids(run), "turn": run.turn, "prompt_tokens": prompt_tokens,
                                            "completion_tokens": completion_tokens, "tool_calls": tool_calls})
    metric("Turns", 1, Model=run.model)
    metric("PromptTokens", prompt_tokens, Model=run.model)
    metric("CompletionTokens", completion_tokens, Model=run.model)


def model_failed(run: Any, err: BaseException) -> None:
    logger().warning("model call failed", exc_info=err, extra={**_run_ids(run), "model": run.model})


@contextlib.contextmanager
def tool_call(tenant: str, run_id: str, tool: str, lane: str) -> Iterator[None]:
    with tracer().provider.in_subsegment(f"## tool {tool_dimension(tool)}") as segment:
        segment.put_annotation("tenant", tenant)
        segment.put_annotation("run_id", run_id)
        segment.put_annotation("tool", tool_dimension(tool))
        segment.put_annotation("lane", lane)
        yield


def tool_ended(tool: str, lane: str, elapsed_ms: float, is_error: bool) -> None:
    dims = {"Tool": tool_dimension(tool), "Lane": lane}
    metric("ToolCalls", 1, **dims)
    metric("ToolLatency", elapsed_ms, **dims)
    if is_error:
        metric("ToolErrors", 1, **dims)


# -- external tasks ------------------------------------------------------------------------------
def _task_ids(task: Any) -> dict[str, Any]:
    return {"tenant": task.tenant, "session_id": task.session_id, "run_id": task.run_id, "task_id": task.task_id,
            "lane": task.lane, "command_type": task.command_type}


def task_created(task: Any) -> None:
    _info("task_created", "task created", **_task_ids(task), timeout_ms=task.timeout_ms)


def task_claimed(task: Any, worker: str, now: int) -> None:
    waited = max(0, now - task.created_at)
    _info("task_claimed", "task claimed", **_task_ids(task), worker=worker, waited_ms=waited)
    metric("TaskWaitTime", waited, Lane=task.lane)


def task_ended(task: Any, status: str, now: int) -> None:
    """completed, failed, timed_out or cancelled: logged by the one caller whose write won."""
    elapsed = max(0, now - task.created_at)
    fields = {**_task_ids(task), "status": status, "elapsed_ms": elapsed}
    if status == "timed_out":
        logger().warning("task timed out", extra={"transition": "task_timed_out", **fields,
                                                   "timeout_ms": task.timeout_ms})
    else:
        _info(f"task_{status}", f"task {status}", **fields)
    metric("TasksEnded", 1, Lane=task.lane, Status=status)
    if status in ("completed", "failed") and task.command_type != "confirm":  # a tool call done outside
        tool_ended(task.command_type, task.lane, elapsed, status == "failed")


def task_cancelled(run: Any, task_id: str, lane: str) -> None:
    """A run that ended (cancelled or failed) took its pending task with it."""
    _info("task_cancelled", "task cancelled", **_run_ids(run), task_id=task_id, lane=lane)
    metric("TasksEnded", 1, Lane=lane, Status="cancelled")


# -- workflows -----------------------------------------------------------------------------------
def workflow_started(wf: Any) -> None:
    _info("workflow_started", "workflow started", tenant=wf.tenant, session_id=wf.session_id,
          workflow_id=wf.workflow_id, kind=wf.kind, steps=wf.n, concurrency=wf.concurrency,
          parent_run_id=wf.parent_run_id)


def step_launched(wf: Any, step: Any, run_id: str) -> None:
    _info("step_launched", "step launched", tenant=wf.tenant, session_id=wf.session_id,
          workflow_id=wf.workflow_id, step=step.key, stage=step.stage, run_id=run_id, agent=step.spec.get("agent"))
    metric("StepsLaunched", 1)


def step_settled(wf: Any, step: Any, status: str, outcome: Any) -> None:
    _info("step_settled", "step settled", tenant=wf.tenant, session_id=wf.session_id, workflow_id=wf.workflow_id,
          step=step.key, status=status, run_id=outcome.run_id, error=outcome.error)
    metric("StepsSettled", 1, Status=status)


def workflow_ended(tenant: str, workflow_id: str, status: str) -> None:
    _info("workflow_ended", "workflow ended", tenant=tenant, workflow_id=workflow_id, status=status)
    metric("WorkflowsEnded", 1, Status=status)


# -- failures -------------------------------------------------------------------------------------
def message_given_up(source: str, given_up: dict[str, Any], body: str) -> None:
    """A runs-queue message whose work was given up (its run or workflow failed, or it was dropped)."""
    logger().error(f"{source} message given up", extra={"transition": "message_given_up", "source": source,
                                                        **given_up, "body": body[:1000]})
    metric("MessagesGivenUp", 1)


def run_redriven(tenant: str, run_id: str, count: int) -> None:
    """The sweeper found a run nobody drives (its message was lost) and queued it again."""
    logger().warning("run re-driven by the sweeper", extra={"transition": "run_redriven", "tenant": tenant,
                                                          "run_id": run_id, "redrives": count})
    metric("RunsRedriven", 1)


def internal_error(where: str) -> None:
    """An unexpected exception answered as a 500: logged with its trace, counted for the alarm."""
    logger().exception(f"internal error in {where}")
    metric("InternalErrors", 1)
