"""The cost shape of an external round trip cannot grow unnoticed: scripts/bench_cost.py runs in a
process of its own (a fresh embedded stack, so no other test's work is counted) and its figures for
the session's first round trips and for a parallel step are bounded by today's measured ones plus
~15% headroom, and a session's 30th round trip may write at most 1.2x what its first did: a
conversation is stored once, so a long session costs no more per round trip than a short one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Measured on the embedded stack, events pushed on the client's and the handler's kept connections:
# 20 AWS calls and 17 DynamoDB write units per round trip over turns 1-5, 6 300 bytes of DynamoDB
# items written by round trip 1, 6 350 by round trip 30.
MAX_CALLS_PER_ROUND_TRIP = 22
MAX_WRITE_UNITS_PER_ROUND_TRIP = 20
MAX_ITEM_BYTES_TURN_1 = 7_500
MAX_GROWTH_BY_TURN_30 = 1.2
# A step of `session.parallel` (12 steps, 8 at a time, the client waiting over WebSocket for the end,
# its connection's cost spread over the 12): 8.7 calls, 13.2 write units and 2 950 bytes; its child
# run's end settles the step and counts it in one write.
STEPS = 12
MAX_CALLS_PER_STEP = 10
MAX_WRITE_UNITS_PER_STEP = 15
MAX_ITEM_BYTES_PER_STEP = 3_400


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("cost") / "cost.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_cost.py"), "--round-trips", "30",
                           "--steps", str(STEPS), "--wait-s", "4", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_given_an_external_round_trip_then_its_aws_calls_stay_within_todays_figure(figures):
    first = figures["round_trip"]["first"]
    print("AWS calls per round trip by turn:", [t["aws_calls"] for t in figures["round_trip"]["per_turn"]])
    ops = first["aws_calls_by_operation"]
    assert ops.get("sqs.SendMessage[lane:execute]") == 1  # the task went out
    # the start and the wake reach the driver by invocation; the runs queue gets the task's timer alone
    assert (ops.get("lambda.Invoke"), ops.get("sqs.SendMessage[runs]")) == (2, 1), ops
    assert 0 < first["aws_calls"] <= MAX_CALLS_PER_ROUND_TRIP, ops


def test_given_an_external_round_trip_then_its_dynamodb_write_units_stay_within_todays_figure(figures):
    # a checkpoint's events carried in the run's item, one index entry per task, no session rewrite
    assert 0 < figures["round_trip"]["first"]["dynamodb"]["wru"] <= MAX_WRITE_UNITS_PER_ROUND_TRIP


def test_given_the_first_round_trip_then_the_dynamodb_bytes_it_writes_stay_within_todays_figure(figures):
    turns = figures["round_trip"]["per_turn"]
    print("DynamoDB item bytes written by turn:", [t["item_bytes_written"] for t in turns])
    assert 0 < turns[0]["item_bytes_written"] <= MAX_ITEM_BYTES_TURN_1


def test_given_a_30_round_trip_session_then_the_last_round_trip_writes_no_more_than_1_2x_the_first(figures):
    turns = figures["round_trip"]["per_turn"]
    assert len(turns) == 30
    first, last = turns[0], turns[-1]
    assert last["item_bytes_written"] <= MAX_GROWTH_BY_TURN_30 * first["item_bytes_written"], \
        [t["item_bytes_written"] for t in turns]
    assert last["wru"] <= MAX_GROWTH_BY_TURN_30 * first["wru"], [t["wru"] for t in turns]


def test_given_the_figures_then_every_unit_is_priced(figures):
    units = [figures["round_trip"]["first"], figures["parallel_step"], figures["waiting"]["wait_minute"],
             figures["waiting"]["idle_worker_minute"]]
    assert all(u["usd_per_1m"] > 0 for u in units)
    # a waiting client is pushed to over the WebSocket API: a connection, no HTTP request, no API function
    wait = figures["waiting"]["wait_minute"]
    assert wait["ws_connection_minutes"] == 1 and wait["http_requests"] == 0, wait["http_requests_by_route"]
    assert "ApiFunction" not in wait["lambda"]["by_function"] and "WsFunction" in wait["lambda"]["by_function"]
    assert figures["waiting"]["pushed_events"] >= 1  # the run's end reached it


def test_given_a_parallel_step_then_its_child_run_ends_settles_and_counts_it_in_one_write(figures):
    step = figures["parallel_step"]
    ops = step["aws_calls_by_operation"]
    print("AWS calls per parallel step:", step["aws_calls"], ops)
    assert ops.get("dynamodb.TransactWriteItems[run+step+workflow]") == 1
    # launched by its run's creation (no step write), its session sent with the run (no read)
    assert "dynamodb.UpdateItem[step]" not in ops
    assert ops.get("dynamodb.GetItem[session]", 0) <= 2 / STEPS + 0.01  # the start's and the first launches'
    assert 0 < step["aws_calls"] <= MAX_CALLS_PER_STEP
    assert 0 < step["dynamodb"]["wru"] <= MAX_WRITE_UNITS_PER_STEP
    assert 0 < step["dynamodb"]["item_bytes_written"] <= MAX_ITEM_BYTES_PER_STEP
