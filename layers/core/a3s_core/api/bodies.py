"""The HTTP API takes JSON bodies only. Each body is checked here before the resolver parses it,
so that what a JSON parser cannot take (other media types, nesting that exhausts the stack, NaN,
numbers too long to convert) is the caller's 4xx, not the kit's crash."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from a3s_core.domain.errors import BadJson, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"
BODY_METHODS = ("POST", "PUT", "PATCH")
# Deep enough for any request of this API; shallow enough that no parser or serializer behind it
# (pydantic, json.dumps, DynamoDB's 32 levels) meets a depth it cannot handle.
MAX_JSON_DEPTH = 64


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def check_body(method: str, content_type: str | None, body: str | None, is_base64: bool = False) -> None:
    """Raise UnsupportedMediaType or BadJson unless the request carries no body or a JSON one.
    No Content-Type at all is read as JSON, as the resolver does."""
    if method.upper() not in BODY_METHODS:
        return  # GET and DELETE take no body: whatever is sent is ignored
    if content_type and media_type(content_type) != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(f"Content-Type {content_type[:100]!r} is not supported: "
                                   f"send the body as {JSON_MEDIA_TYPE}")
    if body and is_base64:
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadJson("request body is not valid base64-encoded UTF-8") from None
    if body:
        parse_json(body)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(text: str) -> Any:
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise BadJson(f"request body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as err:
        raise BadJson(f"request body is not valid JSON: {err.msg} at position {err.pos}") from None
    except ValueError as err:  # NaN, Infinity, an integer of more than 4300 digits
        raise BadJson(f"request body is not valid JSON: {str(err)[:200]}") from None
    if depth(value) > MAX_JSON_DEPTH:
        raise BadJson(f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def depth(value: Any) -> int:
    """How many arrays and objects deep the value goes (without recursion; stops past the limit)."""
    deepest, todo = 0, [(value, 1)]
    while todo and deepest <= MAX_JSON_DEPTH:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in item)
    return deepest
