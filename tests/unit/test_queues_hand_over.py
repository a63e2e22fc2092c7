"""Handing a run to the run driver (engine/queues.py): by asynchronous invocation when the stack
names its driver, through the runs queue otherwise or when the invocation is refused; and the
record of a failed invocation, from the runs queue, read as the message it carried."""
from __future__ import annotations

import json
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from a3s_core.engine.containment import parse_body
from a3s_core.engine.queues import SqsQueues, advance_message

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "sdk") not in sys.path:
    sys.path.insert(0, str(ROOT / "sdk"))


class FakeSqs:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send_message(self, **kw) -> None:
        self.sent.append(kw)


class FakeLambda:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict] = []
        self.error = error

    def invoke(self, **kw) -> dict:
        self.calls.append(kw)
        if self.error:
            raise self.error
        return {"StatusCode": 202}


def test_given_a_driver_function_when_a_run_is_handed_over_then_it_is_one_asynchronous_invocation():
    sqs, lam = FakeSqs(), FakeLambda()
    SqsQueues(sqs, "runs-url", {}, (lam, "stack-run-driver")).hand_over(advance_message("t1", "run-1"))
    [call] = lam.calls
    assert (call["FunctionName"], call["InvocationType"]) == ("stack-run-driver", "Event")
    assert json.loads(call["Payload"]) == {"kind": "advance", "tenant": "t1", "run_id": "run-1"}
    assert sqs.sent == []


def test_given_an_invocation_that_is_refused_then_the_run_goes_through_the_runs_queue():
    sqs, lam = FakeSqs(), FakeLambda(error=RuntimeError("TooManyRequestsException"))
    SqsQueues(sqs, "runs-url", {}, (lam, "stack-run-driver")).hand_over(advance_message("t1", "run-1"))
    [sent] = sqs.sent
    assert sent["QueueUrl"] == "runs-url"
    assert json.loads(sent["MessageBody"]) == {"kind": "advance", "tenant": "t1", "run_id": "run-1"}


def test_given_no_driver_function_then_a_run_is_handed_over_through_the_runs_queue():
    sqs = FakeSqs()
    SqsQueues(sqs, "runs-url", {}).hand_over(advance_message("t1", "run-1"))
    assert [json.loads(s["MessageBody"])["run_id"] for s in sqs.sent] == ["run-1"]


def test_given_a_failed_invocations_record_then_the_message_it_carried_is_read():
    record = {"version": "1.0", "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 1},
              "requestPayload": {"kind": "advance", "tenant": "t1", "run_id": "run-1"},
              "responseContext": {"functionError": "Unhandled"}, "responsePayload": {"errorMessage": "boom"}}
    assert parse_body(json.dumps(record)) == {"kind": "advance", "tenant": "t1", "run_id": "run-1"}
    assert parse_body(json.dumps({**record, "requestPayload": "not a message"})) is None
    assert parse_body(json.dumps({"kind": "advance", "tenant": "t1", "run_id": "r"}))["run_id"] == "r"


# -- template.yaml: who may hand runs over, and where a failed hand-over goes ----------------------
WAKERS = ["ApiFunction", "RunDriverFunction", "LaneWorkerFunction", "SweeperFunction", "RunsDLQFunction"]


@pytest.fixture(scope="module")
def model():
    from a3s_local.template import load_stack

    return load_stack(ROOT / "template.yaml", {"EnableLaneWorker": "true"})


@pytest.mark.parametrize("function", WAKERS)
def test_given_a_function_that_starts_or_wakes_runs_then_it_may_invoke_the_run_driver_it_is_told_of(model, function):
    name = next(n for n, fid in model.function_names.items() if fid == "RunDriverFunction")
    assert model.functions[function].environment["A3S_DRIVER_FUNCTION"] == name
    invoke = [s for s in model.policies[function] if "lambda:InvokeFunction" in str(s["Action"])]
    assert any(fnmatchcase(f"arn:aws:lambda:us-east-1:123456789012:function:{name}", r)
               for s in invoke for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]))


def test_given_the_run_driver_then_a_failed_invocation_goes_to_the_runs_queue_after_one_attempt(model):
    config = model.async_configs["RunDriverFunction"]
    assert (config.retries, config.on_failure_queue_id) == (0, "RunsQueue")
    assert config.max_age_s <= 60  # a throttled hand-over waits in the queue, not in Lambda's back-off


def test_given_the_run_driver_then_lambda_does_not_stop_a_long_chain_of_its_own_invocations(model):
    # a run handed over, handed off and woken again and again is one event's chain: more than 16 passes
    assert model.transformed["Resources"]["RunDriverFunction"]["Properties"]["RecursiveLoop"] == "Allow"
