"""The JSON-only body check that runs before the API's resolver."""
from __future__ import annotations

import base64

import pytest

from a3s_core.api.bodies import MAX_JSON_DEPTH, check_body, depth
from a3s_core.domain.errors import BadJson, UnsupportedMediaType


def test_given_json_then_it_passes_under_any_spelling_of_its_media_type():
    for content_type in (None, "", "application/json", "Application/JSON; charset=utf-8"):
        check_body("POST", content_type, '{"a": [1, {"b": null}]}')


def test_given_a_method_without_a_body_then_nothing_is_checked():
    check_body("GET", "text/plain", "not json")
    check_body("DELETE", "multipart/form-data", "[" * 10_000)


def test_given_another_media_type_then_415_even_without_a_body():
    with pytest.raises(UnsupportedMediaType):
        check_body("POST", "multipart/form-data", None)


def test_given_a_base64_body_then_it_is_decoded_before_it_is_parsed():
    check_body("PUT", "application/json", base64.b64encode(b'{"mode": "external"}').decode(), is_base64=True)
    for raw in ("not base64!", base64.b64encode(b"\xff\xfe").decode(), base64.b64encode(b"{").decode()):
        with pytest.raises(BadJson):
            check_body("PUT", "application/json", raw, is_base64=True)


def test_depth_counts_arrays_and_objects_and_stops_past_the_limit():
    assert depth(1) == depth("x") == 0
    assert depth([]) == depth({}) == 1
    assert depth({"a": [{"b": 1}]}) == 3
    deep: list = []
    for _ in range(500):
        deep = [deep]
    assert MAX_JSON_DEPTH < depth(deep) <= MAX_JSON_DEPTH + 1
    check_body("POST", None, "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    with pytest.raises(BadJson, match="deeper"):
        check_body("POST", None, "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
