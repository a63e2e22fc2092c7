"""Where the engine's messages go: run-driver work (engine/messages.py) on the runs queue, external
tasks on lane queues; a run a caller is waiting for handed to the run driver directly."""
from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from a3s_core.domain.items import Session
from a3s_core.engine.messages import Advance, RunsMessage, wire
from a3s_core.telemetry import trace_header

log = logging.getLogger("a3s_core.queues")

MAX_DELAY_S = 900  # SQS DelaySeconds limit; longer waits are chained (see dispatch.expire_task)


SESSION_IN_MESSAGE_BYTES = 16_000  # a larger session is read by the driver (a message is billed by 64 KB)


def advance_message(tenant: str, run_id: str, session: Session | None = None) -> Advance:
    """The runs-queue message that has the run driver advance a run (with its session as just read,
    if given and not large)."""
    if session is not None and len(session.model_dump_json()) > SESSION_IN_MESSAGE_BYTES:
        session = None
    return Advance(tenant=tenant, run_id=run_id, session=session)


class Queues(Protocol):
    def send_run(self, message: RunsMessage, delay_s: int = 0) -> None: ...
    def hand_over(self, message: Advance) -> None:
        """A run someone waits for (just started, or woken by a finished task): to a driver now."""
    def send_runs(self, messages: list[RunsMessage]) -> None:
        """Several at once (a workflow's first launches): 10 to a request."""
    def send_lane(self, lane: str, body: dict[str, Any]) -> None: ...


class SqsQueues:
    """driver: (Lambda client, run driver's name) to hand runs over by asynchronous invocation: one
    request where the runs queue takes three (send, the event source's receive and delete). Lambda
    keeps the event; if the invocation fails, its on-failure destination is the runs queue
    (template.yaml), whose deliveries and containment take it from there. Without it, or if the
    invocation is refused, the run goes through the runs queue."""

    def __init__(self, client: Any, runs_url: str, lane_urls: dict[str, str],
                 driver: tuple[Any, str] | None = None) -> None:
        self._sqs, self._runs, self._lanes, self._driver = client, runs_url, lane_urls, driver

    def hand_over(self, message: Advance) -> None:
        if self._driver is not None:
            client, name = self._driver
            try:
                client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(wire(message)).encode())
                return
            except Exception as err:  # throttled, or Lambda unreachable: the queue is always there
                log.warning("hand-over by invocation failed (%s); queued instead", err)
        self.send_run(message)

    def send_run(self, message: RunsMessage, delay_s: int = 0) -> None:
        self._sqs.send_message(QueueUrl=self._runs, MessageBody=json.dumps(wire(message)),
                               DelaySeconds=max(0, min(MAX_DELAY_S, delay_s)), **_traced())

    def send_runs(self, messages: list[RunsMessage]) -> None:
        for i in range(0, len(messages), 10):
            chunk = messages[i:i + 10]
            out = self._sqs.send_message_batch(QueueUrl=self._runs, Entries=[
                {"Id": str(n), "MessageBody": json.dumps(wire(m)), **_traced()} for n, m in enumerate(chunk)])
            for failed in out.get("Failed", []):  # SQS took the others: this one goes alone
                self.send_run(chunk[int(failed["Id"])])

    def send_lane(self, lane: str, body: dict[str, Any]) -> None:
        self._sqs.send_message(QueueUrl=self._lanes[lane], MessageBody=json.dumps(body), **_traced())


def _traced() -> dict[str, Any]:
    """The flow's X-Ray header as the message's AWSTraceHeader: its consumer carries the trace on."""
    header = trace_header()
    return {"MessageSystemAttributes": {"AWSTraceHeader": {"StringValue": header, "DataType": "String"}}} \
        if header else {}


class MemoryQueues:
    """Records messages for unit tests; the test decides when to deliver them."""

    def __init__(self) -> None:
        self.runs: list[tuple[dict[str, Any], int]] = []
        self.lanes: list[tuple[str, dict[str, Any]]] = []

    def send_run(self, message: RunsMessage, delay_s: int = 0) -> None:
        self.runs.append((wire(message), delay_s))  # as SQS would carry it

    def send_runs(self, messages: list[RunsMessage]) -> None:
        for message in messages:
            self.send_run(message)

    def hand_over(self, message: Advance) -> None:
        self.send_run(message)

    def send_lane(self, lane: str, body: dict[str, Any]) -> None:
        self.lanes.append((lane, body))
