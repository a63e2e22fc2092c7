"""template.yaml: it transforms offline, lints clean, and keeps its reliability guarantees."""

from __future__ import annotations

import json
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

from a3s_local.template import load_stack  # noqa: E402

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
                                   "SandboxFunction", "RunsDLQFunction", "WsFunction"}
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
    model = load_stack(TEMPLATE, {"EnableLaneWorker": "true", "OpenAIApiKey": "sk-x"})
    actions: list[str] = []
    for statements in model.policies.values():
        for statement in statements:
            action = statement.get("Action", [])
            actions += [action] if isinstance(action, str) else action

    assert actions, "expected inline policies from the SAM policy templates"
    assert [a for a in actions if a == "*" or a.endswith(":*")] == []


def test_given_the_run_driver_then_it_takes_one_run_per_invocation_up_to_a_parameter_and_reports_failures() -> None:
    model = load_stack(TEMPLATE)
    capped = load_stack(TEMPLATE, {"RunsMaxConcurrency": "7"})

    (source,) = [s for s in model.event_sources if s.function_id == "RunDriverFunction"]
    (source7,) = [s for s in capped.event_sources if s.function_id == "RunDriverFunction"]

    assert (source.queue_id, source.batch_size, source.batching_window) == ("RunsQueue", 1, 0)
    assert (source.max_concurrency, source7.max_concurrency) == (100, 7)
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


def test_given_routes_then_only_health_openapi_and_the_console_skip_the_authorizer() -> None:
    routes = {(r.method, r.path): r for r in load_stack(TEMPLATE).routes}
    public = {("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/console"), ("GET", "/console/{name}")}

    assert set(routes) == {("ANY", "/{proxy+}"), *public}
    assert {k for k, r in routes.items() if not r.authorized} == public
    assert {r.function_id for r in routes.values()} == {"ApiFunction"}


def test_given_a_value_outside_allowed_values_when_loading_then_it_is_rejected() -> None:
    with pytest.raises(ValueError, match="EnableLaneWorker"):
        load_stack(TEMPLATE, {"EnableLaneWorker": "yes"})
    with pytest.raises(ValueError, match="unknown"):
        load_stack(TEMPLATE, {"NoSuchParameter": "1"})


# ------------------------------------------------------------------ security


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _grants(model: Any) -> dict[str, set[str]]:
    """Each function's allowed 'action resource' pairs, with this stack's ARNs named by logical id."""
    arns = {f"arn:aws:dynamodb:us-east-1:123456789012:table/{model.tables['Table'].name}": "Table",
            f"arn:aws:s3:::{model.buckets['WorkspaceBucket']}": "WorkspaceBucket",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:": "secret:"}
    arns.update({f"arn:aws:sqs:us-east-1:123456789012:{q.name}": lid for lid, q in model.queues.items()})
    out: dict[str, set[str]] = {}
    for fid, statements in model.policies.items():
        out[fid] = set()
        for st in statements:
            assert st["Effect"] == "Allow"
            for action in _as_list(st["Action"]):
                for resource in _as_list(st["Resource"]):
                    for arn, name in arns.items():
                        resource = resource.replace(arn, name)
                    out[fid].add(f"{action} {resource}")
    return out


def _service(grants: set[str], *services: str) -> set[str]:
    return {g for g in grants if g.split(":", 1)[0] in services}


def test_given_an_openai_key_then_it_lives_in_a_secret_and_only_the_run_driver_can_read_it() -> None:
    model = load_stack(TEMPLATE, {"OpenAIApiKey": "sk-very-secret", "EnableLaneWorker": "true"})
    resources = model.transformed["Resources"]

    (secret_id,) = [lid for lid, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"]
    assert resources[secret_id]["Properties"]["SecretString"] == {"Ref": "OpenAIApiKey"}
    for fid, spec in model.functions.items():
        assert "OPENAI_API_KEY" not in spec.environment, fid
        assert "sk-very-secret" not in json.dumps(spec.environment), fid
        has_arn = "OPENAI_API_KEY_SECRET_ARN" in spec.environment
        assert has_arn is (fid == "RunDriverFunction"), fid
    arn = model.functions["RunDriverFunction"].environment["OPENAI_API_KEY_SECRET_ARN"]
    assert arn.startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:")
    readers = {fid: _service(g, "secretsmanager") for fid, g in _grants(model).items() if _service(g, "secretsmanager")}
    assert readers == {"RunDriverFunction": {f"secretsmanager:GetSecretValue secret:{arn.rsplit(':', 1)[1]}"}}


def test_given_no_openai_key_then_there_is_no_secret_and_no_role_reads_secrets() -> None:
    model = load_stack(TEMPLATE, {"EnableLaneWorker": "true"})

    assert model.secrets == {}
    assert model.functions["RunDriverFunction"].environment["OPENAI_API_KEY_SECRET_ARN"] == ""
    assert all(not _service(g, "secretsmanager") for g in _grants(model).values())


def test_given_the_authorizer_then_it_may_only_get_api_key_items() -> None:
    model = load_stack(TEMPLATE)
    table_arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{model.tables['Table'].name}"

    (statement,) = model.policies["AuthorizerFunction"]

    assert _as_list(statement["Action"]) == ["dynamodb:GetItem"]
    assert _as_list(statement["Resource"]) == [table_arn]
    assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["APIKEY#*"]}}


# Functions that invoke the sandbox presign its tarball's upload, read it, delete it, and apply
# the files it removed.
SANDBOX_EXCHANGE = {"s3:GetObject WorkspaceBucket/sandbox/*", "s3:PutObject WorkspaceBucket/sandbox/*",
                    "s3:DeleteObject WorkspaceBucket/sandbox/*", "s3:DeleteObject WorkspaceBucket/workspaces/*"}
# Forcing a stuck run to failed: a checkpoint (maybe offloaded to S3), its tasks, its workflow step.
FAIL_A_RUN = {"dynamodb:GetItem Table", "dynamodb:PutItem Table", "dynamodb:UpdateItem Table", "dynamodb:Query Table",
              "s3:GetObject WorkspaceBucket/runs/*", "s3:PutObject WorkspaceBucket/runs/*"}
# What each function's code calls (store_dynamo, workspace_s3, queues), and nothing more.
DATA_GRANTS = {
    "AuthorizerFunction": {"dynamodb:GetItem Table"},
    "ApiFunction": {
        "dynamodb:GetItem Table", "dynamodb:PutItem Table", "dynamodb:UpdateItem Table", "dynamodb:Query Table",
        "dynamodb:Query Table/index/gsi1", "dynamodb:Query Table/index/gsi3",
        "dynamodb:BatchWriteItem Table",
        "dynamodb:BatchGetItem Table", "dynamodb:DeleteItem Table",
        "s3:GetObject WorkspaceBucket/runs/*", "s3:PutObject WorkspaceBucket/runs/*"},
    "RunDriverFunction": {
        "dynamodb:GetItem Table", "dynamodb:BatchGetItem Table", "dynamodb:PutItem Table", "dynamodb:UpdateItem Table", "dynamodb:Query Table",
        "dynamodb:DeleteItem Table",
        "s3:GetObject WorkspaceBucket/runs/*", "s3:PutObject WorkspaceBucket/runs/*",
        "s3:GetObject WorkspaceBucket/history/*", "s3:PutObject WorkspaceBucket/history/*",
        "s3:GetObject WorkspaceBucket/workspaces/*", "s3:PutObject WorkspaceBucket/workspaces/*",
        "s3:ListBucket WorkspaceBucket", *SANDBOX_EXCHANGE},
    "SweeperFunction": {"dynamodb:Query Table/index/gsi1", "dynamodb:BatchGetItem Table", *FAIL_A_RUN},
    "RunsDLQFunction": {"dynamodb:BatchGetItem Table", *FAIL_A_RUN},  # a failed child settles its step
    "LaneWorkerFunction": {
        "dynamodb:GetItem Table", "dynamodb:UpdateItem Table", "s3:GetObject WorkspaceBucket/workspaces/*",
        "s3:PutObject WorkspaceBucket/workspaces/*", "s3:DeleteObject WorkspaceBucket/workspaces/*",
        "s3:ListBucket WorkspaceBucket", *SANDBOX_EXCHANGE},
    "SandboxFunction": set(),  # nothing at all: see test_template_sandbox.py
    # connection and watcher items, a run's watchers counter; the catch-up reads events, a run, a lane's tasks
    "WsFunction": {"dynamodb:GetItem Table", "dynamodb:PutItem Table", "dynamodb:UpdateItem Table",
                   "dynamodb:DeleteItem Table", "dynamodb:ConditionCheckItem Table", "dynamodb:Query Table",
                   "dynamodb:Query Table/index/gsi1", "dynamodb:BatchGetItem Table",
                   "s3:GetObject WorkspaceBucket/runs/*"},
}
QUEUE_GRANTS = {
    "AuthorizerFunction": set(),
    "ApiFunction": {"RunsQueue"},
    "RunDriverFunction": {"RunsQueue", "ControlLaneQueue", "QueryLaneQueue", "ExecuteLaneQueue", "GenerateLaneQueue"},
    "SweeperFunction": {"RunsQueue"},
    "RunsDLQFunction": {"RunsQueue"},
    "LaneWorkerFunction": {"RunsQueue"},
    "SandboxFunction": set(),
    "WsFunction": set(),
}


def test_given_each_function_then_its_role_grants_exactly_the_data_access_its_code_uses() -> None:
    grants = _grants(load_stack(TEMPLATE, {"EnableLaneWorker": "true"}))

    assert {fid: _service(g, "dynamodb", "s3") for fid, g in grants.items()} == DATA_GRANTS
    assert {fid: {g.split(" ")[1] for g in _service(g, "sqs")} for fid, g in grants.items()} == QUEUE_GRANTS
    assert {fid for fid, g in grants.items() if _service(g, "bedrock")} == {"RunDriverFunction"}
    assert {g.split(" ")[0] for g in _service(grants["ApiFunction"], "sqs")} == {"sqs:SendMessage*"}


def test_given_allowed_models_then_the_functions_get_them_and_the_default_is_the_default_model_only() -> None:
    strict = load_stack(TEMPLATE).functions["ApiFunction"].environment
    listed = load_stack(TEMPLATE, {"AllowedModels": "scripted,bedrock/*"}).functions["ApiFunction"].environment

    assert strict["A3S_ALLOWED_MODELS"] == ""
    assert listed["A3S_ALLOWED_MODELS"] == "scripted,bedrock/*"


def test_given_throttling_parameters_then_the_api_stages_apply_them_to_every_route() -> None:
    model = load_stack(TEMPLATE, {"ThrottlingBurstLimit": "40", "ThrottlingRateLimit": "20"})
    stages = [r for r in model.transformed["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]

    assert len(stages) == 2  # the HTTP API's and the WebSocket API's
    for stage in stages:
        settings = stage["Properties"]["DefaultRouteSettings"]
        assert settings == {"ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
                            "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"}}
    assert (model.parameters["ThrottlingBurstLimit"], model.parameters["ThrottlingRateLimit"]) == ("40", "20")
    defaults = load_stack(TEMPLATE).parameters
    assert 0 < float(defaults["ThrottlingRateLimit"]) <= float(defaults["ThrottlingBurstLimit"])


def test_given_the_table_and_the_bucket_then_deleting_or_replacing_the_stack_keeps_them() -> None:
    resources = load_stack(TEMPLATE).transformed["Resources"]

    for lid in ("Table", "WorkspaceBucket"):
        assert (resources[lid].get("DeletionPolicy"), resources[lid].get("UpdateReplacePolicy")) == ("Retain", "Retain")


def test_given_the_local_stack_then_it_allows_any_model_while_the_template_default_stays_strict() -> None:
    from a3s_local.embedded import LOCAL_PARAMETERS

    assert LOCAL_PARAMETERS["AllowedModels"] == "*"
    assert load_stack(TEMPLATE).parameters["AllowedModels"] == ""


# -- observability --------------------------------------------------------------------------------
def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in resources.items() if res["Type"] == "AWS::CloudWatch::Alarm"}


@pytest.mark.parametrize("all_features", ["true", "false"])
def test_given_the_alarms_then_every_one_notifies_the_alarm_topic(all_features: str) -> None:
    model = load_stack(TEMPLATE, {"EnableAllFeatures": all_features})
    resources = model.transformed["Resources"]

    alarms = _alarms(resources)
    assert alarms and resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    for lid, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], lid
    always = {lid for lid, alarm in alarms.items() if "Condition" not in alarm}
    assert always == {f"{q}DLQAlarm" for q in ("ControlLane", "QueryLane", "ExecuteLane", "GenerateLane", "Runs")} | \
        {"RunsAgeAlarm", "RunErrorsAlarm", "MessagesGivenUpAlarm", "InternalErrorsAlarm"}
    # A lane drained over HTTP keeps its SQS messages unread, so its age alarm is opt-in.
    assert {lid for lid in alarms if lid not in always} == \
        {f"{lane}LaneAgeAlarm" for lane in ("Control", "Query", "Execute", "Generate")}
    assert {alarms[lid]["Condition"] for lid in alarms if lid not in always} == {"AllFeatures"}


def test_given_the_engine_alarms_then_they_watch_its_own_metrics_of_this_stack() -> None:
    from a3s_core.telemetry import METRICS

    resources = load_stack(TEMPLATE).transformed["Resources"]
    for lid, metric in (("RunErrorsAlarm", "RunErrors"), ("MessagesGivenUpAlarm", "MessagesGivenUp"),
                        ("InternalErrorsAlarm", "InternalErrors")):
        props = resources[lid]["Properties"]
        assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("A3S", metric, "Sum")
        assert props["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]
        assert METRICS[metric][1] == ()  # so `service` is its only dimension, as the alarm says


@pytest.mark.parametrize(("email", "subscribed"), [("", False), ("ops@example.com", True)])
def test_given_alarm_email_then_the_topic_gets_an_email_subscription_only_when_it_is_set(email: str,
                                                                                        subscribed: bool) -> None:
    model = load_stack(TEMPLATE, {"AlarmEmail": email})

    assert model.conditions["HasAlarmEmail"] is subscribed
    sub = model.transformed["Resources"]["AlarmEmailSubscription"]
    assert sub["Condition"] == "HasAlarmEmail"
    assert (sub["Properties"]["Protocol"], sub["Properties"]["Endpoint"]) == ("email", {"Ref": "AlarmEmail"})


def test_given_the_dashboard_then_it_shows_every_engine_metric_and_every_queue_and_dlq() -> None:
    from a3s_core.telemetry import METRICS

    props = load_stack(TEMPLATE).transformed["Resources"]["Dashboard"]["Properties"]
    body = props["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(body.replace("${AWS::StackName}", "stack").replace("${AWS::Region}", "us-east-1"))["widgets"]
    text = json.dumps(widgets)

    for name, (_unit, dims) in METRICS.items():
        # A metric with dimensions is found by a SEARCH over exactly its dimension names.
        schema = ",".join(["A3S", "service", *sorted(dims)])
        assert f'MetricName=\\"{name}\\"' in text or f'"{name}", "service"' in text, name
        if dims:
            assert f"{{{schema}}}" in text and f'MetricName=\\"{name}\\"' in text, name
    for queue in MAIN_QUEUES:
        assert f"${{{queue}.QueueName}}" in body
    for dlq in MAIN_QUEUES.values():
        assert f"${{{dlq}.QueueName}}" in body
    assert {w["properties"]["region"] for w in widgets} == {"us-east-1"}


def test_given_the_functions_then_logs_and_metrics_name_the_stack_and_only_the_sandbox_is_untraced() -> None:
    model = load_stack(TEMPLATE, {"EnableLaneWorker": "true"})
    functions = model.transformed["Resources"]

    for lid in model.functions:
        env = model.functions[lid].environment
        assert (env["POWERTOOLS_SERVICE_NAME"], env["POWERTOOLS_METRICS_NAMESPACE"]) == ("a3s-local", "A3S"), lid
        tracing = functions[lid]["Properties"].get("TracingConfig", {}).get("Mode")
        assert tracing == (None if lid == "SandboxFunction" else "Active"), lid


def test_given_the_websocket_api_then_its_routes_take_the_key_authorizer_at_connect_and_one_thin_function() -> None:
    model = load_stack(TEMPLATE)
    resources = model.transformed["Resources"]

    (api,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api"
              and r["Properties"].get("ProtocolType") == "WEBSOCKET"]
    assert api["RouteSelectionExpression"] == "$request.body.action"
    routes = {r.key: r for r in model.ws_routes}
    assert set(routes) == {"$connect", "$disconnect", "subscribe", "unsubscribe", "$default"}
    assert {r.function_id for r in routes.values()} == {"WsFunction"}
    assert routes["$connect"].authorizer_function_id == "AuthorizerFunction"
    assert [k for k, r in routes.items() if r.authorizer_function_id] == ["$connect"]
    (authorizer,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Authorizer"]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert "WebSocketUrl" in model.transformed["Outputs"]
    assert {r["Type"] for r in resources.values()} >= {"AWS::ApiGatewayV2::Stage", "AWS::ApiGatewayV2::Deployment"}


def test_given_the_websocket_api_then_only_the_functions_that_push_may_post_to_its_connections() -> None:
    model = load_stack(TEMPLATE, {"EnableLaneWorker": "true"})
    manage = {fid: [r for st in sts if "execute-api:ManageConnections" in _as_list(st["Action"])
                    for r in _as_list(st["Resource"])] for fid, sts in model.policies.items()}

    # the engine's, the subscriptions', and those that fail a stuck run (its end is pushed)
    pushers = {"ApiFunction", "RunDriverFunction", "WsFunction", "RunsDLQFunction", "SweeperFunction"}
    assert {fid for fid, resources in manage.items() if resources} == pushers
    api_id = "a3s-WebSocketApi"  # the local stack's name for the WebSocket API
    for fid in sorted(pushers):
        assert manage[fid] == [f"arn:aws:execute-api:us-east-1:123456789012:{api_id}/*"], fid
        assert model.functions[fid].environment["A3S_WS_ENDPOINT"] == \
            f"https://{api_id}.execute-api.us-east-1.amazonaws.com/events"
    assert model.functions["ApiFunction"].environment["A3S_WS_URL"].startswith("wss://")
