"""The checker that holds every e2e answer to /openapi.json: it must catch what it is there for."""
from __future__ import annotations

import json

from openapi_contract import Contract, Recorder

ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
         "properties": {"error": {"type": "object", "required": ["code", "message"],
                                  "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
GATEWAY = {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}


def answer(ref: str) -> dict:
    return {"description": "x", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


DOC = {
    "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
    "paths": {
        "/runs/{run_id}": {"get": {"responses": {"200": answer("Run"), "404": answer("ErrorBody")}}},
        "/runs/{run_id}/pause": {"post": {"responses": {"200": answer("Run")}}},
        "/runs/{run_id}/{other}": {"post": {"responses": {"200": answer("ErrorBody")}}},
    },
    "components": {"schemas": {
        "Run": {"type": "object", "required": ["run_id", "parent"], "additionalProperties": False,
                "properties": {"run_id": {"type": "string"},
                               "parent": {"anyOf": [{"$ref": "#/components/schemas/Ref"}, {"type": "null"}]}}},
        "Ref": {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}},
        "ErrorBody": ERROR, "GatewayError": GATEWAY,
    }},
}
RUN = {"run_id": "r", "parent": {"key": "k"}}
NOT_FOUND = {"error": {"code": "not_found", "message": "no"}}


def problems(method: str, path: str, status: int, body) -> tuple[str | None, list[str]]:
    return Contract(DOC).problems(method, path, status, json.dumps(body))


def test_given_a_documented_answer_then_no_problem():
    assert problems("GET", "/runs/r", 200, RUN) == ("GET /runs/{run_id}", [])
    assert problems("GET", "/runs/r", 404, NOT_FOUND) == ("GET /runs/{run_id}", [])


def test_given_an_undocumented_status_then_it_is_a_mismatch():
    op, found = problems("GET", "/runs/r", 201, RUN)
    assert op == "GET /runs/{run_id}" and "201 is not documented" in found[0]


def test_given_a_body_off_its_schema_then_each_difference_is_a_mismatch_references_resolved():
    _, found = problems("GET", "/runs/r", 200, {"run_id": "r", "parent": {"key": 5}, "extra": 1})
    assert len(found) == 2 and any("extra" in p for p in found) and any("parent" in p for p in found)
    _, found = problems("GET", "/runs/r", 404, {"message": "Not Found"})
    assert found  # an operation's 404 is the kit's shape, not API Gateway's


def test_given_a_literal_segment_and_a_parameter_then_the_literal_wins():
    assert problems("POST", "/runs/r/pause", 200, RUN) == ("POST /runs/{run_id}/pause", [])
    assert problems("POST", "/runs/r/bogus", 200, NOT_FOUND)[0] == "POST /runs/{run_id}/{other}"


def test_given_a_request_no_operation_matches_then_only_a_4xx_in_an_error_shape_passes():
    assert problems("DELETE", "/runs/r", 404, NOT_FOUND) == (None, [])
    assert problems("GET", "/nope", 404, {"message": "Not Found"}) == (None, [])  # API Gateway's own
    assert problems("GET", "/nope", 400, {"message": "x"})[1]
    assert problems("DELETE", "/runs/r", 200, RUN)[1]


def test_given_a_stack_then_its_answers_are_checked_and_mismatches_kept_until_read():
    class Stack:
        def invoke_http(self, method, path, body=None, query=None, headers=None):
            if path == "/openapi.json":
                return 200, json.dumps(DOC)
            return (200, json.dumps(RUN)) if method == "GET" else (500, "boom")

    stack, recorder = Stack(), Recorder()
    recorder.watch(stack)
    assert stack.invoke_http("GET", "/runs/r") == (200, json.dumps(RUN))
    assert recorder.new_mismatches() == []
    stack.invoke_http("POST", "/runs/r/pause")
    [mismatch] = recorder.new_mismatches()
    assert mismatch.startswith("POST /runs/r/pause -> 500: body is not JSON")
    assert recorder.new_mismatches() == [] and recorder.checked == 2
