"""The offline scripted model: directives in, deterministic responses out (docs/design.md)."""
from __future__ import annotations

import json
import time

import jsonschema
import pytest

from a3s_core.llm.base import ModelError, ModelResponse, ToolCall, Usage
from a3s_core.llm.registry import get_model
from a3s_core.llm.scripted import SchemaError, ScriptedModel, minimal_instance


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str = "", calls: list[ToolCall] | None = None) -> dict:
    return {"role": "assistant", "content": text, "tool_calls": [c.to_dict() for c in calls or []]}


def tool(call: ToolCall, content: str, is_error: bool = False) -> dict:
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content, "is_error": is_error}


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


def test_given_the_name_scripted_when_getting_a_model_then_a_scripted_model_is_returned():
    assert isinstance(get_model("scripted"), ScriptedModel)


def test_given_an_unknown_model_name_when_getting_a_model_then_value_error_names_it():
    with pytest.raises(ValueError, match="unknown model 'nope/x'"):
        get_model("nope/x")


def test_given_tool_directives_when_first_turn_then_all_calls_are_returned_in_order(model):
    messages = [user('please\n/tool read {"file_path": "a.txt"}\n/tool bash {"command": "ls"}\n/tool ls')]

    response = model.complete(messages, [])

    assert response.stop_reason == "tool_use"
    assert response.text == ""
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("read", {"file_path": "a.txt"}),
        ("bash", {"command": "ls"}),
        ("ls", {}),
    ]
    assert [c.id for c in response.tool_calls] == ["call_0_0", "call_0_1", "call_0_2"]


def test_given_an_earlier_exchange_when_tools_are_called_again_then_ids_stay_unique(model):
    first = model.complete([user("/tool ls")], []).tool_calls
    history = [user("/tool ls"), assistant(calls=first), tool(first[0], "a.txt"), assistant("done")]

    second = model.complete([*history, user("/tool ls")], []).tool_calls

    assert second[0].id == "call_2_0"
    assert second[0].id != first[0].id


def test_given_invalid_json_after_a_tool_name_when_completing_then_model_error_says_so(model):
    with pytest.raises(ModelError, match="invalid JSON arguments for tool 'read'"):
        model.complete([user("/tool read {file_path: a}")], [])


def test_given_tool_results_when_next_turn_then_echo_answer_lists_each_result(model):
    calls = model.complete([user("hello there\n/tool read {}\n/tool bash {}")], []).tool_calls
    messages = [
        user("hello there\n/tool read {}\n/tool bash {}"),
        assistant(calls=calls),
        tool(calls[0], "line one\nline two"),
        tool(calls[1], "x" * 300, is_error=True),
    ]

    response = model.complete(messages, [])

    assert response.stop_reason == "end_turn"
    assert response.tool_calls == []
    assert response.text == f"echo: hello there\nread -> line one\nbash -> {'x' * 200}"


def test_given_results_of_an_older_prompt_when_a_new_prompt_arrives_then_only_new_results_are_echoed(model):
    calls = model.complete([user("/tool ls")], []).tool_calls
    messages = [user("/tool ls"), assistant(calls=calls), tool(calls[0], "old"), assistant("echo: "), user("again")]

    assert model.complete(messages, []).text == "echo: again"


def test_given_a_json_directive_when_tools_are_also_requested_then_tools_come_first_then_the_json(model):
    prompt = 'ignored text\n/tool ls\n/json {"ok": true, "n": 2}'
    calls = model.complete([user(prompt)], []).tool_calls

    final = model.complete([user(prompt), assistant(calls=calls), tool(calls[0], "a")], [])

    assert final.text == '{"ok": true, "n": 2}'
    assert final.stop_reason == "end_turn"


def test_given_a_fail_directive_when_completing_then_model_error_carries_the_message(model):
    with pytest.raises(ModelError, match="^provider exploded$"):
        model.complete([user("hi\n/fail provider exploded")], [])


def test_given_a_sleep_directive_when_completing_then_the_answer_is_delayed(model):
    start = time.monotonic()

    response = model.complete([user("wait\n/sleep 100")], [])

    assert time.monotonic() - start >= 0.1
    assert response.text == "echo: wait"


def test_given_directives_only_in_an_older_message_when_completing_then_they_are_ignored(model):
    response = model.complete([user("/fail boom"), assistant("x"), user("plain")], [])

    assert response.text == "echo: plain"


def test_given_an_output_schema_and_no_json_when_completing_then_the_answer_is_its_minimal_instance(model):
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}}, "required": ["title"]}

    response = model.complete([user("summarise")], [], output_schema=schema)

    assert json.loads(response.text) == {"title": ""}


SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "string", "minLength": 3}, "b": {"type": "integer"}}, "required": ["a"]},
    {"type": "integer", "minimum": 5},
    {"type": "number", "exclusiveMinimum": 0},
    {"type": "integer", "maximum": -3},
    {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
    {"enum": ["red", "green"]},
    {"const": {"k": 1}},
    {"type": ["null", "string"]},
    {"anyOf": [{"type": "string", "minLength": 2}, {"type": "integer"}]},
    {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
    {"allOf": [{"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}, {"required": ["y"]}]},
    {
        "$defs": {"item": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}}, "required": ["id"]}},
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1}},
        "required": ["items"],
    },
    {
        "definitions": {"status": {"type": "string", "enum": ["ok", "failed"]}},
        "type": "object",
        "properties": {"status": {"$ref": "#/definitions/status"}, "score": {"type": "number", "minimum": 0.5}},
        "required": ["status", "score"],
    },
    {"type": "integer", "minimum": 1, "multipleOf": 3},
    {"type": "object", "properties": {"p": {}, "q": {"type": "boolean"}}, "minProperties": 1},
    {},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_given_a_schema_when_building_its_minimal_instance_then_the_schema_accepts_it(schema):
    jsonschema.validate(minimal_instance(schema), schema)


def test_given_schemas_when_building_minimal_instances_then_they_are_the_smallest_values():
    assert minimal_instance(SCHEMAS[0]) == {"a": "xxx"}
    assert minimal_instance(SCHEMAS[1]) == 5
    assert minimal_instance(SCHEMAS[4]) == [False, False]
    assert minimal_instance(SCHEMAS[5]) == "red"
    assert minimal_instance(SCHEMAS[10]) == {"x": 0, "y": None}
    assert minimal_instance(SCHEMAS[11]) == {"items": [{"id": 1}]}
    assert minimal_instance(SCHEMAS[12]) == {"status": "ok", "score": 1}


def test_given_a_schema_that_accepts_nothing_when_building_then_schema_error():
    with pytest.raises(SchemaError):
        minimal_instance(False)


def test_given_a_conversation_when_completing_then_usage_is_characters_over_four(model):
    # system 8 + user 8 + assistant content 0 + json.dumps({"a": 1}) 8 + tool content 3 = 27 -> 6
    call = ToolCall("call_0_0", "ls", {"a": 1})
    messages = [user("/tool ls"), assistant(calls=[call]), tool(call, "abc")]

    response = model.complete(messages, [], system="be brief")

    assert response.text == "echo: \nls -> abc"  # 16 chars -> 4
    assert response.usage == Usage(prompt_tokens=6, completion_tokens=4)
    assert response.usage.total_tokens == 10


def test_given_a_tool_turn_when_completing_then_completion_tokens_count_the_call_arguments(model):
    prompt = 'x\n/tool bash {"command": "echo hi"}'  # 35 chars -> 8

    response = model.complete([user(prompt)], [])

    # The arguments as JSON, '{"command": "echo hi"}', are 22 characters: 5 tokens.
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (8, 5)


def test_given_an_empty_conversation_when_completing_then_usage_is_at_least_one_token_each(model):
    response = model.complete([], [])

    assert isinstance(response, ModelResponse)
    assert response.usage == Usage(1, 1)


@pytest.mark.parametrize("schema", [{"enum": []}, {"anyOf": []}, {"oneOf": []},
                                    {"type": "object", "required": ["a"], "properties": {"a": {"enum": []}}}])
def test_given_a_schema_with_nothing_to_choose_from_when_building_then_schema_error(schema):
    with pytest.raises(SchemaError):
        minimal_instance(schema)
