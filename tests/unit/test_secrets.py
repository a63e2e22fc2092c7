"""The model key of a deployment: read from Secrets Manager by the runtime, cached, env first."""
from __future__ import annotations

import pytest

from a3s_core import runtime as runtime_module
from a3s_core.engine.queues import MemoryQueues
from a3s_core.llm.openai import OpenAIModel
from a3s_core.runtime import SECRET_MAX_AGE_S, Runtime, Settings
from a3s_core.store.memory import MemoryStore

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:model-key"


class FakeSession:
    """A boto3 session whose Secrets Manager counts the reads and serves `value`."""

    def __init__(self) -> None:
        self.reads, self.value = 0, "sk-one"

    def client(self, service: str) -> FakeSession:
        assert service == "secretsmanager"
        return self

    def get_secret_value(self, SecretId: str) -> dict:  # noqa: N803 - boto3's spelling
        assert SecretId == ARN
        self.reads += 1
        return {"SecretString": self.value}


def a_runtime(arn: str = ARN) -> Runtime:
    settings = Settings(table="t", runs_queue_url="q", lane_queue_urls={}, openai_key_secret_arn=arn)
    return Runtime(settings=settings, store=MemoryStore(), queues=MemoryQueues(), session=FakeSession())


def test_given_a_secret_when_read_again_then_it_is_fetched_once_until_it_is_older_than_the_max_age(monkeypatch):
    rt, now = a_runtime(), [1000.0]
    monkeypatch.setattr(runtime_module.time, "monotonic", lambda: now[0])

    assert [rt.secret(ARN), rt.secret(ARN)] == ["sk-one", "sk-one"]
    rt.session.value = "sk-two"  # rotated
    now[0] += SECRET_MAX_AGE_S + 1

    assert rt.secret(ARN) == "sk-two"
    assert rt.session.reads == 2


def test_given_a_deployed_runtime_when_an_openai_model_is_made_then_its_key_comes_from_the_secret(monkeypatch):
    rt = a_runtime()
    monkeypatch.setattr(runtime_module, "current_runtime", lambda: rt)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    assert OpenAIModel("gpt-4o-mini").api_key == "sk-one"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")  # local and dev use: the environment wins
    assert OpenAIModel("gpt-4o-mini").api_key == "sk-env"
    assert rt.session.reads == 1


@pytest.mark.parametrize("rt", [None, a_runtime(arn="")])
def test_given_no_secret_configured_when_an_openai_model_is_made_then_it_has_no_key(monkeypatch, rt):
    monkeypatch.setattr(runtime_module, "current_runtime", lambda: rt)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    assert OpenAIModel("llama3.2").api_key is None
