"""What a model's answer is made into: the JSON a structured step asked for, and text every
checkpoint can store."""
from __future__ import annotations

import json
import re
from typing import Any


def parse_json_answer(text: str) -> Any:
    """The JSON in a model's answer: the whole text, a fenced block, or the outermost braces."""
    candidates = [text.strip()]
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fence:
        candidates.append(fence.group(1).strip())
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError("the answer holds no JSON value")


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(value: Any) -> Any:
    """The value with every lone surrogate replaced by U+FFFD. A model can send one (a JSON
    "\\ud800" escape), and it has no UTF-8 form, so no checkpoint could hold it."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value
