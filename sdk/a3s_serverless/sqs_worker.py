"""Your own worker on a lane's SQS queue: a Lambda handler in three lines.

    from a3s_serverless.sqs_worker import handle_lane_event

    def handler(event, context):
        return handle_lane_event(event, run_ci_job, context=context)

Each message on a lane queue names one external task (its public fields plus `tenant`). For each
record the helper claims that task over the kit's HTTP API, runs `fn(task) -> {"success",
"result"?, "error"?}` and completes the task with what it returned (or, if it raised, as failed
with the exception). It answers with Lambda's partial-batch response, so subscribe the function
with `FunctionResponseTypes: [ReportBatchItemFailures]`:

- a task finished elsewhere, timed out, cancelled, or not this API key's tenant's: skipped;
- a task another worker holds, a service error, a malformed message: reported, so SQS delivers
  it again (and after MaxReceiveCount moves it to the lane's DLQ).

The endpoint and key come from the arguments or from A3S_ENDPOINT and A3S_API_KEY.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

from .errors import NotFoundError
from .transport import HttpTransport, Transport
from .worker import complete_with

log = logging.getLogger("a3s_serverless.sqs_worker")
DEFAULT_LEASE_MS = 300_000
MIN_LEASE_MS = 1_000


def _transport(transport: Transport | None, endpoint: str | None, api_key: str | None) -> Transport:
    if transport is not None:
        if not callable(getattr(transport, "request", None)):
            raise ValueError(f"transport must have a request() method, got {transport!r}")
        return transport
    endpoint = endpoint or os.environ.get("A3S_ENDPOINT")
    if not endpoint:
        raise ValueError("handle_lane_event needs transport=, endpoint= or A3S_ENDPOINT (the kit's API URL)")
    return HttpTransport(endpoint, api_key or os.environ.get("A3S_API_KEY"))  # ValueError for a bad URL


def handle_lane_event(event: dict, fn: Callable[[dict], dict], *, transport: Transport | None = None,
                      endpoint: str | None = None, api_key: str | None = None, worker: str | None = None,
                      lease_ms: int | None = None, context: Any = None) -> dict[str, list[dict[str, str]]]:
    """Do the tasks of an SQS lane event with fn; the partial-batch response for Lambda.

    `lease_ms` (default: the invocation's remaining time from `context`, else 5 minutes) is how
    long the claim keeps other workers off the task; `worker` names the claimant (default: the
    invocation's request id)."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise ValueError("event must be an SQS event: a dict with a list of Records")
    if not callable(fn):
        raise ValueError("fn must be callable: fn(task) -> {'success': bool, 'result'?: dict, 'error'?: str}")
    if worker is not None and (not isinstance(worker, str) or not worker.strip()):
        raise ValueError(f"worker must be a non-empty string, got {worker!r}")
    if lease_ms is not None and (
            isinstance(lease_ms, bool) or not isinstance(lease_ms, int) or lease_ms < MIN_LEASE_MS):
        raise ValueError(f"lease_ms must be an integer of at least {MIN_LEASE_MS}, got {lease_ms!r}")
    t = _transport(transport, endpoint, api_key)
    name = worker or getattr(context, "aws_request_id", None) or f"sqs-worker-{os.getpid()}"
    failures = []
    for record in event["Records"]:
        lease = lease_ms or _remaining_ms(context)
        try:
            done = _handle(t, record, fn, name, lease)
        except Exception:  # the service failed or is unreachable: deliver the message again
            log.exception("lane message %s failed; SQS will deliver it again", record.get("messageId"))
            done = False
        if not done:
            failures.append({"itemIdentifier": record.get("messageId", "")})
    return {"batchItemFailures": failures}


def _remaining_ms(context: Any) -> int:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return max(MIN_LEASE_MS, int(remaining())) if callable(remaining) else DEFAULT_LEASE_MS


def _handle(t: Transport, record: dict, fn: Callable[[dict], dict], worker: str, lease_ms: int) -> bool:
    """True when the record needs no further delivery (done or nothing to do)."""
    try:
        message = json.loads(record["body"])
        sid, tid = message["session_id"], message["task_id"]
        if not isinstance(sid, str) or not isinstance(tid, str):
            raise TypeError("session_id and task_id must be strings")
    except (KeyError, TypeError, ValueError) as err:
        log.error("lane message %s is not a task: %s", record.get("messageId"), err)
        return False  # a poison message: after MaxReceiveCount it lands in the DLQ for a person to see
    try:
        claim = t.request("POST", f"/sessions/{sid}/external-tasks/{tid}/claim",
                          {"worker": worker, "lease_ms": lease_ms})
    except NotFoundError:
        # Another tenant's task (lane queues serve the whole deployment) or one that is gone: the
        # task stays with its own tenant's workers, who can still claim it over HTTP.
        log.info("task %s is not this key's tenant's (or is gone): skipped", tid)
        return True
    if not claim["claimed"]:
        log.info("task %s not claimed (%s)", tid, claim.get("reason"))
        return claim.get("reason") != "leased"

    def complete(task_id: str, **body: Any) -> bool:
        return t.request("POST", f"/sessions/{sid}/external-tasks/{task_id}/complete", body)["completed"]

    complete_with(fn, claim["task"], complete)
    return True
