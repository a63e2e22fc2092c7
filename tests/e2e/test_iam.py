"""The roles in template.yaml let each function do what its code does: every AWS call the embedded
stack's functions make in a broad flow is checked against that function's IAM statements (moto
itself enforces none). A store method called from a new place, without a grant, fails here."""
from __future__ import annotations

import json
import secrets
import threading
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from a3s_local.embedded import Function

ROOT = Path(__file__).resolve().parents[2]
_DDB_ITEM_OPS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}


def needs(service: str, op: str, params: dict, region: str, account: str) -> list[tuple[str, str, str | None]]:
    """The (IAM action, resource ARN, leading partition key) pairs one API call is authorised by."""
    table = lambda name: f"arn:aws:dynamodb:{region}:{account}:table/{name}"  # noqa: E731
    if service == "dynamodb":
        if op == "TransactWriteItems":
            return [(f"dynamodb:{_DDB_ITEM_OPS[kind]}", table(body["TableName"]),
                     (body.get("Key") or body.get("Item"))["pk"]["S"])
                    for entry in params["TransactItems"] for kind, body in entry.items()]
        if op in ("BatchWriteItem", "BatchGetItem"):
            return [(f"dynamodb:{op}", table(name), None) for name in params["RequestItems"]]
        resource = table(params["TableName"]) + (f"/index/{params['IndexName']}" if "IndexName" in params else "")
        key = params.get("Key") or params.get("Item")
        return [(f"dynamodb:{op}", resource, key["pk"]["S"] if key else None)]
    if service == "s3":
        if op in ("ListObjectsV2", "ListObjects"):
            return [("s3:ListBucket", f"arn:aws:s3:::{params['Bucket']}", None)]
        action = "GetObject" if op == "HeadObject" else op
        return [(f"s3:{action}", f"arn:aws:s3:::{params['Bucket']}/{params['Key']}", None)]
    if service == "sqs":
        return [(f"sqs:{op}", f"arn:aws:sqs:{region}:{account}:{params['QueueUrl'].rsplit('/', 1)[1]}", None)]
    if service == "lambda":  # a run handed to the run driver (engine/queues.py)
        return [("lambda:InvokeFunction", f"arn:aws:lambda:{region}:{account}:function:{params['FunctionName']}", None)]
    if service == "secretsmanager":
        return [(f"secretsmanager:{op}", params["SecretId"], None)]
    if service == "apigatewaymanagementapi":  # the WebSocket API's connections (the local stack's name for it)
        method = {"PostToConnection": "POST", "GetConnection": "GET", "DeleteConnection": "DELETE"}[op]
        return [("execute-api:ManageConnections",
                 f"arn:aws:execute-api:{region}:{account}:a3s-WebSocketApi/events/{method}/@connections/"
                 f"{params['ConnectionId']}", None)]
    raise AssertionError(f"no IAM mapping for {service}:{op}; add one")


def allowed(statements: list[dict], action: str, resource: str, leading_key: str | None) -> bool:
    listed = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
    for st in statements:
        if st["Effect"] != "Allow" or not any(fnmatchcase(action, a) for a in listed(st["Action"])):
            continue
        if not any(fnmatchcase(resource, r) for r in listed(st["Resource"])):
            continue
        condition = st.get("Condition")
        if condition:  # the one kind of condition the template uses; anything else counts as a denial
            keys = condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
            if len(condition) != 1 or keys is None or leading_key is None:
                continue
            if not any(fnmatchcase(leading_key, k) for k in keys):
                continue
        return True
    return False


@pytest.fixture
def recorded(stack, monkeypatch):
    """(function, IAM action, resource, leading key) of every AWS call made inside a function."""
    calls: list[tuple[str, str, str, str | None]] = []
    current = threading.local()
    invoke = Function.invoke

    def traced(self: Function, event: dict) -> Any:
        outer, current.fn = getattr(current, "fn", None), self.logical_id
        try:
            return invoke(self, event)
        finally:
            current.fn = outer

    def hook(model: Any, params: dict, **_: Any) -> None:
        fn = getattr(current, "fn", None)
        if fn is not None:
            region, account = stack.model.region, stack.model.account
            try:
                calls.extend((fn, *need) for need in needs(model.service_model.service_name, model.name, params,
                                                           region, account))
            except Exception as err:  # noqa: BLE001 - never break the call itself: report it below
                calls.append((fn, f"unmapped {model.service_model.service_name}:{model.name}", repr(err), None))

    monkeypatch.setattr(Function, "invoke", traced)
    rt = stack.runtime
    clients = [rt.store._db, rt.s3, rt.queues._sqs, rt.queues._driver[0], rt.connections._client]
    for client in clients:
        client.meta.events.register("before-parameter-build", hook)
    yield calls
    for client in clients:
        client.meta.events.unregister("before-parameter-build", hook)


def test_given_a_broad_flow_then_every_call_of_every_function_is_allowed_by_its_role(
        stack, agent, api, workspace, recorded):
    from a3s_local.template import load_stack

    # Internal tools, a conversation too big for one item (S3), a run waiting on an external task.
    big = "\n".join(secrets.token_urlsafe(190) for _ in range(1900))  # ~480 KB that compresses little
    (workspace / "big.txt").write_text(big)
    session = agent.session(str(workspace), permissive=True)
    session.send('look\n/tool write {"file_path": "a.txt", "content": "hi"}\n/tool read {"file_path": "big.txt"}')
    session.send("and again")
    session.set_lane_handler("execute", "external", 60_000)
    handle = session.send_async('build\n/tool bash {"command": "make"}')
    task_id = next(e for e in handle.events() if e["type"] == "external_task_pending")["task_id"]
    assert api.call("POST", f"/runs/{handle.run_id}/pause")[0] == 200
    assert api.call("POST", f"/runs/{handle.run_id}/inject", {"prompt": "also this"})[0] == 200
    assert api.call("POST", f"/runs/{handle.run_id}/resume")[0] == 200
    status, claimed = api.call("POST", "/lanes/execute/claim", {"max": 50, "lease_ms": 1000, "worker": "iam"})
    assert status == 200 and task_id in [t["task_id"] for t in claimed["tasks"]], claimed
    session.complete_external_task(task_id, result={"output": "built"})
    handle.wait(timeout=30)
    # The lane worker Lambda on the next external task; the sweeper on its schedule.
    worker = Function("LaneWorkerFunction", ROOT / "functions" / "lane_worker", "app.handler", 60, 512)
    handle = session.send_async('w\n/tool write {"file_path": "o.txt", "content": "hi"}')
    next(e for e in handle.events() if e["type"] == "external_task_pending")
    [task] = session.pending_external_tasks()
    body = json.dumps({"tenant": "local", **task})
    worker.invoke({"Records": [{"messageId": "m1", "receiptHandle": "r", "body": body, "attributes": {},
                                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}]})
    handle.wait(timeout=30)
    stack.functions["SweeperFunction"].invoke({"source": "aws.events"})
    # The runs DLQ's consumer on a dead-lettered message of a run that has ended since.
    dead = json.dumps({"kind": "advance", "tenant": "local", "run_id": handle.run_id})
    stack.functions["RunsDLQFunction"].invoke({"Records": [{
        "messageId": "d1", "receiptHandle": "r", "body": dead, "attributes": {}, "messageAttributes": {},
        "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:dlq",
        "awsRegion": "us-east-1"}]})
    # Workflows: a parallel one, and a resumable one run again after a failed step.
    session.parallel([{"task_id": "p1", "agent": "general", "prompt": "one"},
                      {"task_id": "p2", "agent": "general", "prompt": "two"}])
    specs = [{"task_id": "ok", "agent": "general", "prompt": "fine"},
             {"task_id": "bad", "agent": "general", "prompt": "broken\n/fail no luck"}]
    workflow_id = f"iam-{secrets.token_hex(4)}"
    session.parallel_resumable(specs, workflow_id)
    session.parallel_resumable(specs, workflow_id)
    assert api.call("GET", "/runs", query={"session_id": session.session_id})[0] == 200
    fresh = f"key-{secrets.token_hex(6)}"  # a key the gateway has not cached: the authorizer runs
    stack.add_api_key(fresh, "local")
    assert api.call("GET", "/runs", key=fresh)[0] == 200
    session.close()

    model = load_stack(ROOT / "template.yaml", {**stack.parameters, "EnableLaneWorker": "true"})
    denied = {(fn, action, resource) for fn, action, resource, key in recorded
              if not allowed(model.policies[fn], action, resource, key)}
    assert {fn for fn, *_ in recorded} == set(model.policies) - {"SandboxFunction"}  # it calls no AWS API
    assert {(fn, a, r.split("/")[1]) for fn, a, r, _ in recorded if a == "s3:PutObject"} >= {
        ("RunDriverFunction", "s3:PutObject", "runs"), ("RunDriverFunction", "s3:PutObject", "history")}
    # Pushed events (the driver), catch-ups (the WebSocket function): both post to connections.
    assert {fn for fn, a, *_ in recorded if a == "execute-api:ManageConnections"} >= {"RunDriverFunction",
                                                                                     "WsFunction"}
    assert sorted(denied) == []
