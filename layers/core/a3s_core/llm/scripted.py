"""The offline, deterministic `scripted` model (docs/design.md, section 9).

It reads directives from the newest user message; other lines are ignored:
``/tool NAME {json}``, ``/json {json}``, ``/fail MESSAGE``, ``/sleep MS``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from a3s_core.llm.base import ModelError, ModelResponse, ToolCall, Usage

MAX_SLEEP_MS = 600_000
RESULT_LINE_CHARS = 200
_DIRECTIVES = ("/tool", "/json", "/fail", "/sleep")


@dataclass
class Script:
    """The directives of one user message."""

    text: str = ""  # first line that is not a directive
    tools: list[tuple[str, dict]] = field(default_factory=list)
    json_answer: str | None = None
    fail: str | None = None
    sleep_ms: int = 0


def parse_script(content: str) -> Script:
    script = Script()
    text: str | None = None
    for raw in content.splitlines():
        line = raw.strip()
        head, _, rest = line.partition(" ")
        rest = rest.strip()
        if head not in _DIRECTIVES:
            if text is None and line:
                text = line
            continue
        if head == "/tool":
            name, _, arg_text = rest.partition(" ")
            if not name:
                raise ModelError("scripted model: '/tool' needs a tool name")
            script.tools.append((name, _parse_arguments(name, arg_text.strip())))
        elif head == "/json":
            if script.json_answer is None:  # the first /json wins
                script.json_answer = rest
        elif head == "/fail":
            if script.fail is None:
                script.fail = rest or "scripted failure"
        else:
            try:
                ms = float(rest)
            except ValueError:
                raise ModelError(f"scripted model: '/sleep' needs milliseconds, got {rest!r}") from None
            script.sleep_ms = min(MAX_SLEEP_MS, script.sleep_ms + max(0, int(ms)))
    script.text = text or ""
    return script


def _parse_arguments(name: str, arg_text: str) -> dict:
    if not arg_text:
        return {}
    try:
        arguments = json.loads(arg_text)
    except json.JSONDecodeError as e:
        raise ModelError(f"scripted model: invalid JSON arguments for tool {name!r}: {e}") from None
    if not isinstance(arguments, dict):
        raise ModelError(f"scripted model: arguments for tool {name!r} must be a JSON object")
    return arguments


class ScriptedModel:
    """Deterministic ModelClient: the same conversation always gives the same response."""

    def complete(
        self,
        messages: list[dict],
        tools: list[dict],
        system: str | None = None,
        *,
        output_schema: dict | None = None,
    ) -> ModelResponse:
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        script = parse_script(str(messages[last_user].get("content") or "")) if last_user >= 0 else Script()
        if script.sleep_ms:
            time.sleep(script.sleep_ms / 1000)
        if script.fail is not None:
            raise ModelError(script.fail)

        since = messages[last_user + 1 :]
        prompt_tokens = _prompt_tokens(messages, system)
        if script.tools and not any(m.get("role") == "assistant" for m in since):
            turn = sum(1 for m in messages if m.get("role") == "assistant")
            calls = [ToolCall(f"call_{turn}_{i}", name, args) for i, (name, args) in enumerate(script.tools)]
            completion = sum(len(json.dumps(c.arguments)) for c in calls)
            return ModelResponse("", calls, Usage(prompt_tokens, max(1, completion // 4)), "tool_use")

        if script.json_answer is not None:
            answer = script.json_answer
        elif output_schema is not None:
            answer = json.dumps(minimal_instance(output_schema))
        else:
            lines = [f"echo: {script.text}"]
            for m in since:
                if m.get("role") == "tool":
                    content = str(m.get("content") or "")
                    first = content.splitlines()[0] if content else ""
                    lines.append(f"{m.get('name', '?')} -> {first[:RESULT_LINE_CHARS]}")
            answer = "\n".join(lines)
        return ModelResponse(answer, [], Usage(prompt_tokens, max(1, len(answer) // 4)), "end_turn")


def _prompt_tokens(messages: list[dict], system: str | None) -> int:
    chars = len(system or "")
    for m in messages:
        chars += len(str(m.get("content") or ""))
        if m.get("role") == "assistant":
            chars += sum(len(json.dumps(c.get("arguments", {}))) for c in m.get("tool_calls") or [])
    return max(1, chars // 4)


class SchemaError(ValueError):
    """The schema accepts nothing this function can build."""


def minimal_instance(schema: Any, root: Any = None, _depth: int = 0) -> Any:
    """The smallest JSON instance ``schema`` accepts: only required properties, empty strings
    and arrays (or their minimum lengths), 0 within numeric bounds, False, None.
    `pattern` and `format` are not satisfied beyond their length constraints."""
    root = schema if root is None else root
    if _depth > 50:
        raise SchemaError("schema recursion too deep")
    if schema is True or schema == {}:
        return None
    if schema is False:
        raise SchemaError("schema 'false' accepts nothing")
    if not isinstance(schema, dict):
        raise SchemaError(f"not a schema: {schema!r}")

    def again(s: Any) -> Any:
        return minimal_instance(s, root, _depth + 1)

    rest = dict(schema)
    if "$ref" in rest:
        return again(_merge(_resolve(rest.pop("$ref"), root), rest))
    if "allOf" in rest:
        merged = rest
        for part in merged.pop("allOf"):
            merged = _merge(merged, _resolve(part["$ref"], root) if "$ref" in part else part)
        return again(merged)
    for key in ("anyOf", "oneOf"):
        if key in rest:
            branches = rest.pop(key)
            if not branches:
                raise SchemaError(f"'{key}: []' accepts nothing")
            return again(_merge(rest, branches[0]))
    if "const" in rest:
        return rest["const"]
    if "enum" in rest:
        if not rest["enum"]:
            raise SchemaError("'enum: []' accepts nothing")
        return rest["enum"][0]

    kind = rest.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if kind is None:
        kind = _infer_type(rest)
    if kind == "object":
        props = rest.get("properties", {})
        names = list(rest.get("required", []))
        names += [n for n in props if n not in names][: max(0, rest.get("minProperties", 0) - len(names))]
        return {n: again(props.get(n, {})) for n in names}
    if kind == "array":
        prefix = rest.get("prefixItems") or (rest["items"] if isinstance(rest.get("items"), list) else [])
        items = rest.get("items") if isinstance(rest.get("items"), dict) else {}
        return [again(prefix[k] if k < len(prefix) else items) for k in range(rest.get("minItems", 0))]
    if kind == "string":
        return "x" * rest.get("minLength", 0)
    if kind in ("integer", "number"):
        return _minimal_number(rest)
    if kind == "boolean":
        return False
    return None


def _infer_type(schema: dict) -> str | None:
    if {"properties", "required", "minProperties", "additionalProperties"} & schema.keys():
        return "object"
    if {"items", "prefixItems", "minItems"} & schema.keys():
        return "array"
    if {"minLength", "maxLength", "pattern", "format"} & schema.keys():
        return "string"
    if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"} & schema.keys():
        return "number"
    return None


def _minimal_number(schema: dict) -> int | float:
    value: int | float = 0
    lo, hi = schema.get("minimum"), schema.get("maximum")
    ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_lo is True:  # draft 4: a boolean modifying minimum
        ex_lo, lo = lo, None
    if ex_hi is True:
        ex_hi, hi = hi, None
    if isinstance(lo, (int, float)) and not isinstance(lo, bool) and value < lo:
        value = math.ceil(lo)
    if isinstance(ex_lo, (int, float)) and not isinstance(ex_lo, bool) and value <= ex_lo:
        value = math.floor(ex_lo) + 1
    if isinstance(hi, (int, float)) and not isinstance(hi, bool) and value > hi:
        value = math.floor(hi)
    if isinstance(ex_hi, (int, float)) and not isinstance(ex_hi, bool) and value >= ex_hi:
        value = math.ceil(ex_hi) - 1
    step = schema.get("multipleOf")
    if step and value % step:
        value = math.ceil(value / step) * step
    return value


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        raise SchemaError(f"only local $ref is supported, got {ref!r}")
    node = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise SchemaError(f"unresolvable $ref {ref!r}") from None
    return node


def _merge(a: Any, b: Any) -> dict:
    """Simple allOf merge: later keywords win, except properties and required, which combine."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return b if isinstance(b, dict) else a
    merged = {**a, **b}
    if "properties" in a and "properties" in b:
        merged["properties"] = {**a["properties"], **b["properties"]}
    if "required" in a and "required" in b:
        merged["required"] = list(dict.fromkeys([*a["required"], *b["required"]]))
    return merged
