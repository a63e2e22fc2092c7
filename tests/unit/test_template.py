"""template.yaml: it transforms offline, lints clean, and keeps its reliability guarantees."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
if str(ROOT / "sdk") not in sys.path:  # the SDK may not be pip-installed in the test venv
    sys.path.insert(0, str(ROOT / "sdk"))

from a3s_serverless.local.template import load_stack  # noqa: E402

MAIN_QUEUES = {
    "ControlLaneQueue": "ControlLaneDLQ",
    "QueryLaneQueue": "QueryLaneDLQ",
    "ExecuteLaneQueue": "ExecuteLaneDLQ",
    "GenerateLaneQueue": "GenerateLaneDLQ",
    "RunsQueue": "RunsDLQ",
}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials, no region, no AWS config and no sockets: any AWS call would fail."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))

    def no_network(*_: Any, **__: Any) -> None:
        raise AssertionError("the SAM transform tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)


def test_given_no_aws_access_when_transforming_then_sam_produces_plain_cloudformation(offline: None) -> None:
    model = load_stack(TEMPLATE)

    types = {res["Type"] for res in model.transformed["Resources"].values()}
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    assert {"AWS::Lambda::Function", "AWS::ApiGatewayV2::Api", "AWS::Lambda::LayerVersion"} <= types
    assert set(model.functions) == {"AuthorizerFunction", "ApiFunction", "RunDriverFunction", "SweeperFunction",
                                    "RunsDLQFunction"}
    assert model.authorizer_function_id == "AuthorizerFunction"


def test_given_the_template_when_linted_then_cfn_lint_reports_nothing() -> None:
    exe = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    assert exe, "cfn-lint is pinned in requirements-dev.txt"

    result = subprocess.run([exe, str(TEMPLATE)], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr  # 2 = errors, 4 = warnings


def test_given_each_lane_and_the_runs_queue_then_it_has_a_long_lived_dlq_with_max_receive_count() -> None:
    model = load_stack(TEMPLATE, {"MaxReceiveCount": "3"})

    for queue_id, dlq_id in MAIN_QUEUES.items():
        queue = model.queues[queue_id]
        assert (queue.dlq_logical_id, queue.max_receive_count) == (dlq_id, 3)
        assert model.queues[dlq_id].message_retention == 14 * 24 * 3600


def test_given_the_iam_roles_then_no_statement_grants_wildcard_actions() -> None:
    resources = load_stack(TEMPLATE, {"EnableLaneWorker": "true"}).transformed["Resources"]
    actions: list[str] = []
    for res in resources.values():
        if res["Type"] == "AWS::IAM::Role":
            for policy in res["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    action = statement.get("Action", [])
                    actions += [action] if isinstance(action, str) else action

    assert actions, "expected inline policies from the SAM policy templates"
    assert [a for a in actions if a == "*" or a.endswith(":*")] == []


def test_given_the_run_driver_then_its_runs_queue_source_reports_batch_item_failures() -> None:
    model = load_stack(TEMPLATE)

    (source,) = [s for s in model.event_sources if s.function_id == "RunDriverFunction"]

    assert (source.queue_id, source.batch_size, source.batching_window) == ("RunsQueue", 10, 0)
    assert source.report_batch_item_failures
    assert model.functions["RunDriverFunction"].timeout == 120


def test_given_max_receive_count_then_the_run_driver_knows_it_and_the_runs_dlq_has_a_consumer() -> None:
    model = load_stack(TEMPLATE, {"MaxReceiveCount": "7"})

    assert model.functions["RunDriverFunction"].environment["A3S_MAX_RECEIVE_COUNT"] == "7"
    (source,) = [s for s in model.event_sources if s.function_id == "RunsDLQFunction"]
    assert source.queue_id == "RunsDLQ" and source.report_batch_item_failures
    # Lambda rejects an SQS source whose visibility timeout is below the function's timeout.
    assert model.queues["RunsDLQ"].visibility_timeout >= model.functions["RunsDLQFunction"].timeout


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_given_enable_lane_worker_when_loading_then_the_worker_and_its_source_follow_the_flag(enabled: str) -> None:
    model = load_stack(TEMPLATE, {"EnableLaneWorker": enabled})

    sources = [(s.function_id, s.queue_id, s.batch_size) for s in model.event_sources]
    present = enabled == "true"
    assert ("LaneWorkerFunction" in model.functions) is present
    assert (("LaneWorkerFunction", "ExecuteLaneQueue", 1) in sources) is present
    assert model.conditions["LaneWorkerEnabled"] is present
    # Lambda rejects an SQS source whose visibility timeout is below the 900 s function timeout.
    assert model.queues["ExecuteLaneQueue"].visibility_timeout == (900 if present else 300)


def test_given_routes_then_only_health_and_openapi_skip_the_authorizer() -> None:
    routes = {(r.method, r.path): r for r in load_stack(TEMPLATE).routes}

    assert set(routes) == {("ANY", "/{proxy+}"), ("GET", "/health"), ("GET", "/openapi.json")}
    assert {k for k, r in routes.items() if not r.authorized} == {("GET", "/health"), ("GET", "/openapi.json")}
    assert {r.function_id for r in routes.values()} == {"ApiFunction"}


def test_given_a_value_outside_allowed_values_when_loading_then_it_is_rejected() -> None:
    with pytest.raises(ValueError, match="EnableLaneWorker"):
        load_stack(TEMPLATE, {"EnableLaneWorker": "yes"})
    with pytest.raises(ValueError, match="unknown"):
        load_stack(TEMPLATE, {"NoSuchParameter": "1"})
