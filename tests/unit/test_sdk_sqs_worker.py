"""handle_lane_event against a fake service: what it claims with, what it reports to SQS when the
service fails, and the example template's wiring to the kit's exported queue ARNs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from a3s_local.template import read_template
from a3s_serverless.errors import ServiceError
from a3s_serverless.sqs_worker import handle_lane_event

ROOT = Path(__file__).resolve().parents[2]
TASK = {"task_id": "t1", "id": "t1", "session_id": "s1", "run_id": "r1", "lane": "execute",
        "command_type": "bash", "payload": {"command": "make test"}, "timeout_ms": 60000, "status": "pending"}


class FakeService:
    def __init__(self, complete_fails: bool = False) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.complete_fails = complete_fails

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        self.calls.append((method, path, body))
        if path.endswith("/claim"):
            return {"claimed": True, "task": TASK, "reason": None}
        if self.complete_fails:
            raise ServiceError(503, "unavailable", "try later")
        return {"completed": True}


class Context:
    aws_request_id = "req-42"

    def get_remaining_time_in_millis(self) -> int:
        return 90_000


def event(*bodies: str) -> dict:
    return {"Records": [{"messageId": f"m{i}", "body": b} for i, b in enumerate(bodies)]}


MESSAGE = json.dumps({"tenant": "acme", **TASK})


def test_given_a_lambda_context_then_the_claim_names_the_invocation_and_leases_its_remaining_time():
    service = FakeService()
    assert handle_lane_event(event(MESSAGE), lambda t: {"success": True, "result": {"output": "ok"}},
                             transport=service, context=Context()) == {"batchItemFailures": []}
    assert service.calls[0] == ("POST", "/sessions/s1/external-tasks/t1/claim", {"worker": "req-42", "lease_ms": 90_000})
    assert service.calls[1] == ("POST", "/sessions/s1/external-tasks/t1/complete",
                                {"success": True, "result": {"output": "ok"}, "error": None})


def test_given_the_completion_fails_then_the_record_is_redelivered_and_the_work_is_not_recorded_as_failed():
    service = FakeService(complete_fails=True)
    response = handle_lane_event(event(MESSAGE), lambda t: {"success": True, "result": {"output": "ok"}},
                                 transport=service)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    completions = [body for _, path, body in service.calls if path.endswith("/complete")]
    assert completions == [{"success": True, "result": {"output": "ok"}, "error": None}]


@pytest.mark.parametrize("body", ["[]", '{"task_id": "t1"}', '{"session_id": 1, "task_id": "t1"}', "{"])
def test_given_a_message_that_names_no_task_then_it_is_reported_without_a_request(body):
    service = FakeService()
    assert handle_lane_event(event(body), lambda t: {"success": True}, transport=service) == \
        {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert service.calls == []


def test_given_no_transport_then_the_endpoint_and_key_come_from_the_environment(monkeypatch):
    import a3s_serverless.sqs_worker as sqs_worker

    made: list = []

    class Recording(FakeService):
        def __init__(self, endpoint: str, api_key: str | None = None) -> None:
            super().__init__()
            made.append((endpoint, api_key))

    monkeypatch.setattr(sqs_worker, "HttpTransport", Recording)
    monkeypatch.setenv("A3S_ENDPOINT", "https://api.example/prod")
    monkeypatch.setenv("A3S_API_KEY", "k-worker")
    handle_lane_event(event(), lambda t: {"success": True})
    assert made == [("https://api.example/prod", "k-worker")]


def test_the_example_snippet_subscribes_to_an_arn_the_kit_exports_and_reports_batch_item_failures():
    kit = read_template(ROOT / "template.yaml")
    exported = {o["Export"]["Name"]["Fn::Sub"].replace("${AWS::StackName}", "${KitStackName}")
                for o in kit["Outputs"].values() if "Export" in o}
    snippet = read_template(ROOT / "examples" / "sqs_worker" / "template-snippet.yaml")
    [fn] = [r for r in snippet["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    [source] = fn["Properties"]["Events"].values()
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"]["Fn::ImportValue"]["Fn::Sub"] in exported
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    lanes = {"Control", "Query", "Execute", "Generate"}
    assert {f"${{KitStackName}}-{lane}LaneQueueArn" for lane in lanes} <= exported
