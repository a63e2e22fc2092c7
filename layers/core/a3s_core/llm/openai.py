"""Adapter for any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, Ollama, vLLM,
LiteLLM), over the stdlib's urllib so the Lambda layer needs no SDK."""
from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from a3s_core.llm.base import ModelError, ModelResponse, ToolCall, Usage

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_RETRIES = 3
MAX_TOTAL_SLEEP_S = 20.0
BACKOFF_BASE_S = 1.0
ERROR_BODY_CHARS = 500


class OpenAIModel:
    """ModelClient for ``openai/<model>``. ``sleep`` is injectable so tests need not wait."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 300, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if not model:
            raise ValueError("OpenAIModel needs a model name, e.g. 'gpt-4o-mini'")
        self.model, self.timeout_s, self._sleep = model, timeout_s, sleep
        # Env is read here, not at import: the embedded stack and tests set it at run time.
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or _deployed_key()

    def complete(
        self,
        messages: list[dict],
        tools: list[dict],
        system: str | None = None,
        *,
        output_schema: dict | None = None,  # ignored: the engine puts the contract in the prompt
    ) -> ModelResponse:
        body: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(messages, system)}
        if tools:  # OpenAI rejects an empty tools array
            body["tools"] = [{"type": "function", "function": {
                "name": t["name"], "description": t.get("description", ""), "parameters": t["input_schema"]}}
                for t in tools]
        return from_openai_response(self._post("/chat/completions", body))

    def _post(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:  # Ollama and most local servers need none
            headers["Authorization"] = f"Bearer {self.api_key}"
        slept = 0.0
        for attempt in range(MAX_RETRIES + 1):
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                    raw = resp.read()
                break
            except urllib.error.HTTPError as err:
                error = ModelError(f"openai HTTP {err.code}: {_error_message(err)}")
                wanted = _retry_delay(err, attempt)
                retryable = err.code == 429 or err.code >= 500
                if not retryable or attempt == MAX_RETRIES or (wanted > 0 and slept >= MAX_TOTAL_SLEEP_S):
                    raise error from None
                delay = min(wanted, MAX_TOTAL_SLEEP_S - slept)
                self._sleep(delay)
                slept += delay
            except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
                reason = getattr(err, "reason", err)
                if isinstance(reason, TimeoutError):  # on connect it comes wrapped in URLError
                    raise ModelError(f"openai request to {self.base_url} timed out after {self.timeout_s} s") from None
                raise ModelError(f"openai connection error ({self.base_url}): {reason}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ModelError(f"openai: response is not JSON: {raw[:ERROR_BODY_CHARS]!r}") from None


def _deployed_key() -> str | None:
    """A deployment keeps the key in Secrets Manager and gives the run driver only its ARN; the
    runtime fetches and caches it. OPENAI_API_KEY above is for local and dev use."""
    from a3s_core.runtime import current_runtime

    rt = current_runtime()
    if rt is None or not rt.settings.openai_key_secret_arn:
        return None
    return rt.secret(rt.settings.openai_key_secret_arn)


def _error_message(err: urllib.error.HTTPError) -> str:
    """The provider's message: ``error.message`` (OpenAI, Ollama, LiteLLM), a string ``error``,
    or a top-level ``message`` (older vLLM); else the raw body."""
    try:
        raw = err.read().decode("utf-8", "replace")
    except OSError:
        raw = ""
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if payload.get("message"):
            return str(payload["message"])
    return raw[:ERROR_BODY_CHARS] or str(err.reason)


def _retry_delay(err: urllib.error.HTTPError, attempt: int) -> float:
    """Seconds to wait before the next attempt: the server's Retry-After when it gives one in
    seconds (OpenAI also sends retry-after-ms), else exponential backoff."""
    for header, scale in (("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = err.headers.get(header) if err.headers else None
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                pass  # an HTTP date: fall back to backoff
    return BACKOFF_BASE_S * 2**attempt


def to_openai_messages(messages: list[dict], system: str | None) -> list[dict]:
    out: list[dict] = [{"role": "system", "content": system}] if system else []
    for m in messages:
        role = m.get("role")
        if role == "user":
            out.append({"role": "user", "content": str(m.get("content") or "")})
        elif role == "assistant":
            calls = m.get("tool_calls") or []
            msg: dict[str, Any] = {"role": "assistant", "content": m.get("content") or (None if calls else "")}
            if calls:  # OpenAI rejects an empty tool_calls array
                msg["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                    "name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}} for c in calls]
            out.append(msg)
        elif role == "tool":
            # The protocol has no error flag: the content already says what went wrong.
            out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": str(m.get("content") or "")})
        else:
            raise ModelError(f"openai: unsupported message role {role!r}")
    return out


def from_openai_response(reply: dict) -> ModelResponse:
    """The turn in a chat-completions reply. A reply without the fields the protocol promises (a
    null message, a call with no function) is a ModelError, never a crash of the caller."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not choices or not isinstance(choices, list):
        raise ModelError(f"openai: response has no choices: {_snippet(reply)}")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise ModelError(f"openai: the response's first choice has no message: {_snippet(reply)}")
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise ModelError(f"openai: tool_calls is not a list: {_snippet(raw_calls)}")
    calls = [_tool_call(i, c) for i, c in enumerate(raw_calls)]
    usage = reply.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return ModelResponse(
        text=_content(message.get("content")),
        tool_calls=calls,
        usage=Usage(_tokens(usage.get("prompt_tokens")), _tokens(usage.get("completion_tokens"))),
        stop_reason="tool_use" if calls else "end_turn",
    )


def _content(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    raise ModelError(f"openai: message content is not text: {_snippet(content)}")


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _snippet(value: Any) -> str:
    return json.dumps(value, default=str)[:ERROR_BODY_CHARS]


def _tool_call(index: int, call: Any) -> ToolCall:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ModelError(f"openai: tool call {index} has no function name: {_snippet(call)}")
    name = fn["name"]
    raw = fn.get("arguments")
    if isinstance(raw, dict):  # some servers send an object rather than a JSON string
        arguments: Any = raw
    else:
        try:
            arguments = json.loads(raw) if raw else {}
        except (TypeError, ValueError) as e:
            raise ModelError(f"openai: invalid JSON arguments for tool {name!r}: {e}") from None
    if not isinstance(arguments, dict):
        raise ModelError(f"openai: arguments for tool {name!r} must be a JSON object")
    # Some local servers omit ids; the engine needs one to pair results with calls.
    return ToolCall(call.get("id") or f"call_{index}", name, arguments)
