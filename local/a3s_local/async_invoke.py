"""Lambda's asynchronous invocation (InvocationType "Event") for the embedded stack. moto runs no
function without Docker, so an Invoke of one of the stack's functions is answered here as Lambda
answers it (202, the event kept) and the function runs on a thread of its own, with its
EventInvokeConfig: its retries, then its on-failure destination (a queue of the stack) gets the
record Lambda sends, the failed event under `requestPayload`. Threads that finished an invocation
wait for the next (starting one cost more than a short invocation); there are as many as run at
once, as Lambda scales out."""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

from .template import AsyncInvokeConfig

if TYPE_CHECKING:
    from .embedded import EmbeddedStack

log = logging.getLogger("a3s_local")


class AsyncInvocations:
    def __init__(self, stack: EmbeddedStack) -> None:
        self.stack = stack
        self.inflight = 0
        self.invocations = 0
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._idle = 0      # threads waiting for work (each one taken off when work is put)
        self._threads = 0

    def attach(self, events: Any) -> None:
        """Answer Invoke calls of clients made from this event system (last: counters see them first)."""
        events.register_last("before-call.lambda.Invoke", self._before_call, unique_id="a3s-async-invoke")

    def _before_call(self, params: dict[str, Any], **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        assert self.stack.model is not None
        if params.get("headers", {}).get("X-Amz-Invocation-Type") != "Event":
            return None  # a synchronous invocation: not this emulation's
        name = urllib.parse.unquote(params["url_path"].split("/functions/", 1)[1].split("/", 1)[0])
        function_id = self.stack.model.function_names.get(name.rsplit(":function:", 1)[-1].split(":", 1)[0])
        if function_id is None:
            return None  # not a function of the stack: moto answers (ResourceNotFound)
        body = params.get("body") or b"{}"
        event = json.loads(body.decode() if isinstance(body, bytes) else body)
        with self._lock:
            self.inflight += 1
            self.invocations += 1
            start = self._idle == 0
            if start:
                self._threads += 1
            else:
                self._idle -= 1
        self._work.put((function_id, event))
        if start:
            threading.Thread(target=self._serve, daemon=True, name="async-invocations").start()
        return AWSResponse(params.get("url", ""), 202, {}, None), {
            "StatusCode": 202, "ResponseMetadata": {"HTTPStatusCode": 202, "RequestId": str(uuid.uuid4())}}

    def close(self) -> None:
        """Let the waiting threads end (the stack stops)."""
        with self._lock:
            threads, self._threads = self._threads, 0
        for _ in range(threads):
            self._work.put(None)

    def _serve(self) -> None:
        while (work := self._work.get()) is not None:
            self._run(*work)
            with self._lock:
                self._idle += 1

    def _run(self, function_id: str, event: dict[str, Any]) -> None:
        assert self.stack.model is not None
        config = self.stack.model.async_configs.get(function_id, AsyncInvokeConfig())
        try:
            error: BaseException | None = None
            attempts = 0
            # Lambda waits a minute, then two, between attempts; here they follow at once.
            while attempts <= config.retries and not self.stack.stopping.is_set():
                attempts += 1
                try:
                    self.stack.functions[function_id].invoke(event)
                    return
                except BaseException as err:  # noqa: BLE001 - an error, or an invocation that died: retried, then sent on
                    error = err
            if error is not None and config.on_failure_queue_id and not self.stack.stopping.is_set():
                self.stack.sqs.send_message(QueueUrl=self.stack.queue_url(config.on_failure_queue_id),
                                            MessageBody=json.dumps(failure_record(self.stack, function_id, event,
                                                                                  error, attempts)))
            elif error is not None:
                log.warning("async invocation of %s failed and has no destination: %s", function_id, error)
        except Exception:
            log.exception("async invocation of %s", function_id)
        finally:
            with self._lock:
                self.inflight -= 1


def failure_record(stack: EmbeddedStack, function_id: str, event: dict[str, Any], error: BaseException,
                   attempts: int) -> dict[str, Any]:
    """What Lambda sends an on-failure destination after an asynchronous invocation's last attempt."""
    assert stack.model is not None
    name = next(n for n, fid in stack.model.function_names.items() if fid == function_id)
    return {
        "version": "1.0", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {
            "requestId": str(uuid.uuid4()), "condition": "RetriesExhausted", "approximateInvokeCount": attempts,
            "functionArn": f"arn:aws:lambda:{stack.model.region}:{stack.model.account}:function:{name}:$LATEST"},
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": str(error), "errorType": type(error).__name__},
    }
