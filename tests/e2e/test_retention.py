"""Retention: every item the kit stores (sessions, runs and their index, events, control requests,
tasks, lane metrics, workflows and their list, steps) carries a DynamoDB `ttl` RetentionDays after
its last write; API keys never expire. A resumable workflow run again rewrites its journal, so
finished steps live as long as the workflow does."""
from __future__ import annotations

import secrets
import time

from a3s_core.api.subscriptions import CONNECTION_S
from a3s_serverless import Agent, SessionQueueConfig

DAY = 24 * 3600


def items_of(stack, tenant: str) -> list[dict]:
    db = stack.boto.client("dynamodb")
    table = stack.runtime.settings.table
    out, args = [], {"TableName": table}
    while True:
        page = db.scan(**args)
        out += [i for i in page["Items"] if i["pk"]["S"].startswith(f"T#{tenant}#")]
        if "LastEvaluatedKey" not in page:
            return out
        args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def kind(item: dict) -> str:
    pk, sk = item["pk"]["S"], item["sk"]["S"]
    if pk.endswith(("#RUNS", "#WFS")):
        return pk.rsplit("#", 1)[1]
    return sk.split("#", 1)[0]


def test_given_a_broad_flow_then_every_item_expires_retention_days_after_its_last_write(stack, api):
    tenant = f"ret-{secrets.token_hex(4)}"
    key = f"key-{secrets.token_hex(6)}"
    stack.add_api_key(key, tenant)
    qc = SessionQueueConfig()
    qc.enable_all_features = True
    session = Agent(stack.transport(key)).session("ws", permissive=True, queue_config=qc)
    session.set_lane_handler("execute", "external", 60_000)
    before = int(time.time())
    handle = session.send_async('build\n/tool bash {"command": "make"}')
    task_id = next(e for e in handle.events() if e["type"] == "external_task_pending")["task_id"]
    assert api.call("POST", f"/runs/{handle.run_id}/inject", {"prompt": "also this"}, key=key)[0] == 200
    # an output too large for the run's item to carry its events: they get an event item
    session.complete_external_task(task_id, result={"output": secrets.token_hex(1500)})
    handle.wait(timeout=30)
    session.parallel([{"task_id": "p1", "agent": "general", "prompt": "one"}])
    after = int(time.time())

    items = items_of(stack, tenant)
    kinds = {kind(i) for i in items}
    assert {"SESSION", "MSG", "RUN", "EV", "TASK", "METRICS", "WF", "WFS", "STEP"} <= kinds, kinds  # runs are listed by gsi3
    retention = stack.runtime.settings.retention_days * DAY
    missing = [(i["pk"]["S"], i["sk"]["S"]) for i in items if "ttl" not in i]
    assert missing == []
    for item in items:
        if kind(item) in ("CONN", "W"):  # a WebSocket connection's items go with it (2 hours at most)
            assert before < int(item["ttl"]["N"]) <= after + CONNECTION_S, item
            continue
        assert before + retention <= int(item["ttl"]["N"]) <= after + retention, item


def test_given_a_resumable_workflow_run_again_then_its_journaled_steps_are_kept_as_long_as_it(stack, agent, workspace):
    session = agent.session(str(workspace))
    specs = [{"task_id": "ok", "agent": "general", "prompt": "fine"},
             {"task_id": "bad", "agent": "general", "prompt": "broken\n/fail no luck"}]
    workflow_id = f"ret-{secrets.token_hex(4)}"
    session.parallel_resumable(specs, workflow_id)
    db, table = stack.boto.client("dynamodb"), stack.runtime.settings.table

    def ttls() -> dict[str, int]:
        got = db.query(TableName=table, KeyConditionExpression="pk = :p",
                       ExpressionAttributeValues={":p": {"S": f"T#local#W#{workflow_id}"}})["Items"]
        return {i["sk"]["S"]: int(i["ttl"]["N"]) for i in got}

    first = ttls()
    # Age the journal as if written long ago; running the workflow again must renew all of it.
    for sk in first:
        db.update_item(TableName=table, Key={"pk": {"S": f"T#local#W#{workflow_id}"}, "sk": {"S": sk}},
                       UpdateExpression="SET #t = :old", ExpressionAttributeNames={"#t": "ttl"},
                       ExpressionAttributeValues={":old": {"N": str(int(time.time()) + DAY)}})
    session.parallel_resumable(specs, workflow_id)
    again = ttls()

    floor = int(time.time()) + stack.runtime.settings.retention_days * DAY - 120
    assert set(again) == set(first) and len(again) == 3  # the workflow and its two steps
    assert all(t >= floor for t in again.values()), again


def test_given_a_session_used_by_runs_alone_then_its_expiry_follows_them_and_an_expired_exchange_stops_nothing(
        stack, agent, workspace):
    session = agent.session(str(workspace))
    assert session.send("first").text == "echo: first"
    db, table = stack.boto.client("dynamodb"), stack.runtime.settings.table
    pk = {"S": f"T#local#S#{session.session_id}"}

    def ttl() -> int:
        return int(db.get_item(TableName=table, Key={"pk": pk, "sk": {"S": "SESSION"}})["Item"]["ttl"]["N"])

    # A run's end does not rewrite the session (its exchanges count themselves)...
    fresh = ttl()
    assert session.send("second").text == "echo: second" and ttl() == fresh
    # ...but for its expiry, once it is more than a day behind: a session in use does not expire.
    db.update_item(TableName=table, Key={"pk": pk, "sk": {"S": "SESSION"}}, UpdateExpression="SET #t = :old",
                   ExpressionAttributeNames={"#t": "ttl"},
                   ExpressionAttributeValues={":old": {"N": str(int(time.time()) + DAY)}})
    # The session's first exchange has expired meanwhile (its TTL came first): the conversation goes on
    # with what is left, read by a container that has seen none of it.
    db.delete_item(TableName=table, Key={"pk": pk, "sk": {"S": "MSG#00000000"}})
    stack.runtime.store._exchanges.clear()
    assert session.send("third").text == "echo: third"
    assert ttl() >= int(time.time()) + stack.runtime.settings.retention_days * DAY - 120
    history = stack.runtime.store.session_with_history("local", session.session_id)
    assert history[2] == 3 and [m["content"] for m in history[1] if m["role"] == "user"] == ["second", "third"]
