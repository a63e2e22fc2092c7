"""Amazon Bedrock adapter over the Converse API (one model-agnostic request shape for every
Bedrock model that supports tool use)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from a3s_core.llm.base import ModelError, ModelResponse, ToolCall, Usage

DEFAULT_MAX_TOKENS = 4096
# Converse rejects blank text blocks; a tool that printed nothing still needs a result.
EMPTY_TOOL_RESULT = "(no output)"


@lru_cache(maxsize=1)
def _default_client() -> Any:
    """One client per process: creating one is slow, clients are thread-safe, and the adaptive
    retry mode's rate limiter only works if its state is shared between calls."""
    import boto3
    from botocore.config import Config

    return boto3.client("bedrock-runtime",
                        config=Config(retries={"mode": "adaptive", "max_attempts": 8}, read_timeout=300))


class BedrockModel:
    """ModelClient for ``bedrock/<model-id>`` (a model id or an inference profile id/ARN)."""

    def __init__(self, model_id: str, client: Any = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        if not model_id:
            raise ValueError("BedrockModel needs a model id, e.g. 'anthropic.claude-3-5-sonnet-20240620-v1:0'")
        self.model_id, self.max_tokens, self._client = model_id, max_tokens, client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _default_client()
        return self._client

    def complete(
        self,
        messages: list[dict],
        tools: list[dict],
        system: str | None = None,
        *,
        output_schema: dict | None = None,  # ignored: the engine puts the contract in the prompt
    ) -> ModelResponse:
        request: dict[str, Any] = {"modelId": self.model_id, "messages": to_converse_messages(messages),
                                   "inferenceConfig": {"maxTokens": self.max_tokens}}
        if system:
            request["system"] = [{"text": system}]
        if tools:
            request["toolConfig"] = {"tools": [
                {"toolSpec": {"name": t["name"], "description": t.get("description") or t["name"],
                              "inputSchema": {"json": t["input_schema"]}}} for t in tools]}
        try:
            reply = self.client.converse(**request)
        except ClientError as err:
            info = err.response.get("Error", {})
            raise ModelError(f"bedrock {info.get('Code', 'ClientError')}: {info.get('Message', str(err))}") from err
        except BotoCoreError as err:  # no region/credentials, connection failures, bad parameters
            raise ModelError(f"bedrock {type(err).__name__}: {err}") from err
        return from_converse_response(reply)


def to_converse_messages(messages: list[dict]) -> list[dict]:
    """Our messages -> Converse messages. Tool results travel in user messages, and Converse
    requires user/assistant alternation, so consecutive same-role messages are merged."""
    out: list[dict] = []
    for m in messages:
        role = m.get("role")
        content: list[dict[str, Any]]
        if role == "user":
            role, content = "user", [{"text": str(m.get("content") or "")}]
        elif role == "assistant":
            content = [{"text": m["content"]}] if m.get("content") else []
            content += [{"toolUse": {"toolUseId": c["id"], "name": c["name"], "input": c.get("arguments") or {}}}
                        for c in m.get("tool_calls") or []]
            if not content:
                continue  # an empty answer (e.g. cut off by max_tokens): Converse rejects empty content
        elif role == "tool":
            role, content = "user", [{"toolResult": {
                "toolUseId": m["tool_call_id"],
                "content": [{"text": str(m.get("content") or "") or EMPTY_TOOL_RESULT}],
                "status": "error" if m.get("is_error") else "success"}}]
        else:
            raise ModelError(f"bedrock: unsupported message role {role!r}")
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(content)
        else:
            out.append({"role": role, "content": content})
    return out


def from_converse_response(reply: dict) -> ModelResponse:
    blocks = ((reply.get("output") or {}).get("message") or {}).get("content") or []
    texts = [b["text"] for b in blocks if b.get("text")]
    calls = [ToolCall(b["toolUse"]["toolUseId"], b["toolUse"]["name"], b["toolUse"].get("input") or {})
             for b in blocks if "toolUse" in b]
    usage = reply.get("usage") or {}
    return ModelResponse(
        text="\n".join(texts),
        tool_calls=calls,
        usage=Usage(usage.get("inputTokens", 0), usage.get("outputTokens", 0)),
        stop_reason="tool_use" if reply.get("stopReason") == "tool_use" else "end_turn",
    )
