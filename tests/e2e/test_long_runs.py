"""Runs that outgrow one driver invocation, one DynamoDB item, or their turn budget."""
from __future__ import annotations

import base64
import os
import time

import pytest

from a3s_core.llm.base import ModelResponse, ToolCall, Usage
from a3s_core.llm.registry import MODEL_FACTORIES
from a3s_serverless import RunFailed


class LoopModel:
    """Calls `ls` on each of its first `turns` turns, taking `delay_s` per answer, then answers."""

    def __init__(self, turns: int, delay_s: float) -> None:
        self.turns, self.delay_s = turns, delay_s

    def complete(self, messages, tools, system=None, *, output_schema=None):
        time.sleep(self.delay_s)
        done = sum(1 for m in messages if m["role"] == "assistant")
        if done < self.turns:
            return ModelResponse(text="", tool_calls=[ToolCall(id=f"c{done}", name="ls", arguments={})],
                                 usage=Usage(10, 1), stop_reason="tool_use")
        return ModelResponse(text=f"looped {done} times", usage=Usage(10, 1))


@pytest.fixture
def loop_model(monkeypatch):
    def factory(spec: str) -> LoopModel:
        turns, delay_ms = spec.split(",")
        return LoopModel(int(turns), int(delay_ms) / 1000)

    monkeypatch.setitem(MODEL_FACTORIES, "loop", factory)


def test_given_a_run_longer_than_one_driver_invocation_then_it_is_handed_over_and_finishes(
        agent, workspace, loop_model):
    # The test stack's driver timeout is 4 s: eight turns of 0.6 s cannot fit in one invocation.
    session = agent.session(str(workspace), model="loop/8,600")
    handle = session.send_async("go round")
    events = list(handle.events())
    result = handle.wait()
    assert result.text == "looped 8 times"
    assert result.tool_calls_count == 8
    assert (result.prompt_tokens, result.completion_tokens) == (90, 9)
    assert any(e["type"] == "run_handoff" for e in events)
    starts = [e["turn"] for e in events if e["type"] == "turn_start"]
    assert starts == list(range(1, 10))  # no turn asked twice across invocations


def test_given_a_turn_budget_when_the_model_keeps_calling_tools_then_the_run_stops_with_a_clear_reason(
        agent, workspace, loop_model):
    session = agent.session(str(workspace), model="loop/100,0")
    handle = session.send_async("forever", max_turns=3)
    with pytest.raises(RunFailed) as err:
        handle.wait(timeout=30)
    assert err.value.result.stop_reason == "max_turns"
    assert "stopped after 3 turns" in str(err.value)


def test_given_a_conversation_over_400_kb_then_the_run_finishes_and_the_session_continues(
        agent, workspace, stack):
    # ~480 KB that does not compress much (stored documents are compressed): too big for an item
    big = "\n".join(f"line {i:05d} " + base64.b64encode(os.urandom(180)).decode() for i in range(1900))
    (workspace / "big.txt").write_text(big)
    session = agent.session(str(workspace), permissive=True)
    first = session.send("summarise\n/tool read {\"file_path\": \"big.txt\"}")
    assert first.text.startswith("echo: summarise\nread -> ")
    # The first exchange now lives in S3, stored once; the next run of the session carries it on
    # without copying it: its own checkpoints stay small enough for DynamoDB.
    second = session.send("and again")
    assert second.text == "echo: and again"
    assert second.prompt_tokens > 480_000 // 4
    s3 = stack.boto.client("s3")

    def keys(prefix: str) -> list[str]:
        listed = s3.list_objects_v2(Bucket=stack.runtime.settings.bucket, Prefix=prefix)
        return [o["Key"] for o in listed.get("Contents", [])]

    assert [k for k in keys("history/") if first.run_id in k]
    assert [k for k in keys("runs/") if first.run_id in k]  # its checkpoints held the big tool result
    assert not [k for k in keys("") if second.run_id in k]


def test_given_a_model_that_fails_then_the_run_fails_with_the_providers_message(agent, workspace):
    session = agent.session(str(workspace))
    with pytest.raises(RunFailed) as err:
        session.send("hello\n/fail the provider is down")
    assert err.value.result.stop_reason == "model_error"
    assert "the provider is down" in err.value.result.error
