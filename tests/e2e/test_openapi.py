"""/openapi.json is the contract: a valid OpenAPI 3.1 document that says what each operation
answers (its success status, its body, its errors in the kit's shape) and how it is authorized.
That every answer of this suite matches it is checked by the conftest (tests/openapi_contract.py)."""
from __future__ import annotations

import json
import re

import pytest
import schemathesis

CONTROL = ("pause", "resume", "cancel", "inject")
SUCCESS = {("POST", "/sessions"): 201, ("POST", "/sessions/{session_id}/runs"): 202,
           ("POST", "/sessions/{session_id}/workflows"): 202}
PUBLIC = {("GET", "/health"), ("GET", "/openapi.json")}
JSON = "application/json"


@pytest.fixture
def doc(api) -> dict:
    status, body = api.call("GET", "/openapi.json", key=None)  # public: no key needed
    assert status == 200, body
    return body


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def refs(value) -> set[str]:
    found = set()
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            found.add(value["$ref"])
        for v in value.values():
            found |= refs(v)
    elif isinstance(value, list):
        for v in value:
            found |= refs(v)
    return found


def schema_of(response: dict) -> dict:
    return response["content"][JSON]["schema"]


def test_given_the_document_then_it_is_valid_openapi_3_1_and_every_reference_resolves(doc):
    assert doc["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(doc).validate()  # against the OpenAPI 3.1 meta-schema
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)), ids
    for _, path, op in operations(doc):
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (path, declared)


def test_given_each_operation_then_its_one_success_status_is_the_one_it_sends(doc):
    for method, path, op in operations(doc):
        success = [int(code) for code in op["responses"] if code.startswith("2")]
        assert success == [SUCCESS.get((method, path), 200)], (method, path, success)


def test_given_each_operation_then_every_answer_it_documents_has_a_json_schema(doc):
    for method, path, op in operations(doc):
        for code, response in op["responses"].items():
            assert response["description"], (method, path, code)
            assert schema_of(response), (method, path, code)


def test_given_the_security_scheme_then_every_route_but_the_public_ones_needs_a_bearer_key(doc):
    [(name, scheme)] = doc["components"]["securitySchemes"].items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "security" not in doc  # per operation, so that the public ones need nothing
    for method, path, op in operations(doc):
        if (method, path) in PUBLIC:
            assert "security" not in op and {"401", "403"}.isdisjoint(op["responses"]), path
        else:
            assert op["security"] == [{name: []}], (method, path)


def test_given_the_errors_then_each_is_documented_in_the_kit_shape_where_it_can_occur(doc):
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    gateway = {"$ref": "#/components/schemas/GatewayError"}
    assert "HTTPValidationError" not in json.dumps(doc)  # Powertools' own 422 shape is never sent
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"} and "detail" in detail["properties"]
    for method, path, op in operations(doc):
        codes = set(op["responses"])
        assert "500" in codes, (method, path)
        if (method, path) in PUBLIC:
            continue
        assert {"401", "403", "422"} <= codes, (method, path)
        if method in ("POST", "PUT"):
            assert {"400", "413", "415"} <= codes, (method, path)
        if re.search(r"{(session_id|run_id|workflow_id)}", path):
            assert "404" in codes, (method, path)
        for code, response in op["responses"].items():
            if code == "401":  # API Gateway's refusal, or the kit's own
                assert {json.dumps(s, sort_keys=True) for s in schema_of(response)["anyOf"]} == {
                    json.dumps(error_body, sort_keys=True), json.dumps(gateway, sort_keys=True)}
            elif code == "403":
                assert schema_of(response) == gateway
            elif not code.startswith("2"):
                assert schema_of(response) == error_body, (method, path, code)


def test_given_run_control_then_each_action_is_an_operation_of_its_own(doc):
    assert not any("{action}" in path for path in doc["paths"])
    ids = set()
    for action in CONTROL:
        op = doc["paths"][f"/runs/{{run_id}}/{action}"]["post"]
        ids.add(op["operationId"])
        assert {"404", "409"} <= set(op["responses"])
        assert schema_of(op["responses"]["200"]) == {"$ref": "#/components/schemas/ControlView"}
        assert ("requestBody" in op) == (action == "inject")
    assert len(ids) == len(CONTROL)
    inject = doc["paths"]["/runs/{run_id}/inject"]["post"]["requestBody"]
    assert inject["required"] and schema_of(inject) == {"$ref": "#/components/schemas/InjectBody"}
    assert doc["components"]["schemas"]["InjectBody"]["required"] == ["prompt"]


def test_given_health_then_it_is_public_too(api):
    # no WebSocket server runs in-process (Agent.local() connects to the stack directly): none to name
    assert api.call("GET", "/health", key=None) == (200, {"ok": True, "websocket_url": None})
