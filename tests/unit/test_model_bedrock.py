"""The Bedrock Converse adapter: request mapping, response mapping and error mapping, checked
by botocore's Stubber against the real bedrock-runtime service model (no network)."""
from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber

from a3s_core.llm.base import ModelError, ToolCall, Usage
from a3s_core.llm.bedrock import BedrockModel, _default_client
from a3s_core.llm.registry import get_model

MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
READ_TOOL = {"name": "read", "description": "Read a file",
             "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                              "required": ["file_path"]}}


@pytest.fixture
def client():
    c = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))
    with Stubber(c) as stub:
        c.stub = stub  # type: ignore[attr-defined]
        yield c
        stub.assert_no_pending_responses()


def reply(content: list[dict], stop: str = "end_turn", inp: int = 12, out: int = 7) -> dict:
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out},
            "metrics": {"latencyMs": 100}}


def test_given_a_tool_use_reply_when_completing_then_text_calls_usage_and_stop_reason_are_mapped(client):
    client.stub.add_response("converse", reply(
        [{"text": "Let me read it."},
         {"toolUse": {"toolUseId": "tooluse_abc", "name": "read", "input": {"file_path": "a.txt"}}}],
        stop="tool_use"))

    resp = BedrockModel(MODEL_ID, client=client).complete([{"role": "user", "content": "read a.txt"}], [READ_TOOL])

    assert resp.text == "Let me read it."
    assert resp.tool_calls == [ToolCall("tooluse_abc", "read", {"file_path": "a.txt"})]
    assert resp.usage == Usage(12, 7)
    assert resp.stop_reason == "tool_use"


def test_given_a_tool_round_trip_when_completing_then_the_converse_request_is_mapped_exactly(client):
    messages = [
        {"role": "user", "content": "compare a and b"},
        {"role": "assistant", "content": "Reading both.", "tool_calls": [
            {"id": "tooluse_1", "name": "read", "arguments": {"file_path": "a.txt"}},
            {"id": "tooluse_2", "name": "read", "arguments": {"file_path": "b.txt"}}]},
        {"role": "tool", "tool_call_id": "tooluse_1", "name": "read", "content": "alpha", "is_error": False},
        {"role": "tool", "tool_call_id": "tooluse_2", "name": "read", "content": "no such file", "is_error": True},
        {"role": "user", "content": "and be brief"},  # merged into the tool results' user message
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "tooluse_3", "name": "read", "arguments": {"file_path": "c.txt"}}]},  # no text block
        {"role": "tool", "tool_call_id": "tooluse_3", "name": "read", "content": "", "is_error": False},
    ]
    expected = {
        "modelId": MODEL_ID,
        "system": [{"text": "You are terse."}],
        "inferenceConfig": {"maxTokens": 1000},
        "toolConfig": {"tools": [{"toolSpec": {"name": "read", "description": "Read a file",
                                               "inputSchema": {"json": READ_TOOL["input_schema"]}}}]},
        "messages": [
            {"role": "user", "content": [{"text": "compare a and b"}]},
            {"role": "assistant", "content": [
                {"text": "Reading both."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "read", "input": {"file_path": "a.txt"}}},
                {"toolUse": {"toolUseId": "tooluse_2", "name": "read", "input": {"file_path": "b.txt"}}}]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "alpha"}], "status": "success"}},
                {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "no such file"}], "status": "error"}},
                {"text": "and be brief"}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "tooluse_3", "name": "read", "input": {"file_path": "c.txt"}}}]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_3", "content": [{"text": "(no output)"}], "status": "success"}}]},
        ],
    }
    client.stub.add_response("converse", reply([{"text": "a is alpha; b is missing"}]), expected)

    resp = BedrockModel(MODEL_ID, client=client, max_tokens=1000).complete(
        messages, [READ_TOOL], "You are terse.", output_schema={"type": "object"})

    assert resp.text == "a is alpha; b is missing"
    assert resp.tool_calls == [] and resp.stop_reason == "end_turn"


def test_given_no_tools_and_no_system_when_completing_then_both_are_omitted(client):
    client.stub.add_response("converse", reply([{"text": "hi"}]), {
        "modelId": MODEL_ID, "inferenceConfig": {"maxTokens": 4096},
        "messages": [{"role": "user", "content": [{"text": "hello"}]}]})

    assert BedrockModel(MODEL_ID, client=client).complete([{"role": "user", "content": "hello"}], []).text == "hi"


def test_given_max_tokens_with_no_content_when_completing_then_an_empty_response_is_returned(client):
    client.stub.add_response("converse", reply([], stop="max_tokens", out=4096))

    resp = BedrockModel(MODEL_ID, client=client).complete([{"role": "user", "content": "go on"}], [])

    assert (resp.text, resp.tool_calls, resp.stop_reason) == ("", [], "end_turn")
    assert resp.usage == Usage(12, 4096)


@pytest.mark.parametrize("code,message", [
    ("ThrottlingException", "Too many requests, please wait before trying again."),
    ("ValidationException", "The model returned the following errors: messages: roles must alternate"),
])
def test_given_a_service_error_when_completing_then_model_error_carries_code_and_message(client, code, message):
    client.stub.add_client_error("converse", service_error_code=code, service_message=message, http_status_code=400)

    with pytest.raises(ModelError) as err:
        BedrockModel(MODEL_ID, client=client).complete([{"role": "user", "content": "hi"}], [])

    assert str(err.value) == f"bedrock {code}: {message}"


def test_given_no_credentials_when_completing_then_the_botocore_error_becomes_model_error():
    class NoCredentialsClient:
        def converse(self, **_: object) -> dict:
            raise NoCredentialsError()

    with pytest.raises(ModelError, match="bedrock NoCredentialsError: Unable to locate credentials"):
        BedrockModel(MODEL_ID, client=NoCredentialsClient()).complete([{"role": "user", "content": "hi"}], [])


def test_given_bedrock_names_when_getting_a_model_then_the_adapter_is_built_or_the_name_refused():
    model = get_model(f"bedrock/{MODEL_ID}")
    assert isinstance(model, BedrockModel) and model.model_id == MODEL_ID
    profile = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet"
    assert get_model(f"bedrock/{profile}").model_id == profile  # type: ignore[attr-defined]
    for name in ("bedrock", "bedrock/"):
        with pytest.raises(ValueError, match="needs a model id"):
            get_model(name)


def test_given_no_injected_client_when_used_then_one_shared_adaptive_retry_client_is_created_lazily():
    _default_client.cache_clear()
    try:
        model = BedrockModel(MODEL_ID)
        assert model._client is None  # nothing built at construction
        c = model.client
        assert c.meta.service_model.service_name == "bedrock-runtime"
        assert c.meta.config.retries["mode"] == "adaptive" and c.meta.config.read_timeout == 300
        assert BedrockModel("other").client is c
    finally:
        _default_client.cache_clear()
