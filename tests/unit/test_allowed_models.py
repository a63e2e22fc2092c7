"""A deployment decides which models its tenants may name (AllowedModels -> A3S_ALLOWED_MODELS)."""
from __future__ import annotations

import pytest

from a3s_core.api.schemas import CreateSessionBody
from a3s_core.api.service import Service
from a3s_core.domain.errors import BadRequest
from a3s_core.engine.queues import MemoryQueues
from a3s_core.runtime import Runtime, Settings
from a3s_core.store.memory import MemoryStore

ENV = {"A3S_TABLE": "t", "A3S_RUNS_QUEUE_URL": "q", "A3S_LANE_QUEUE_CONTROL": "c", "A3S_LANE_QUEUE_QUERY": "q",
       "A3S_LANE_QUEUE_EXECUTE": "e", "A3S_LANE_QUEUE_GENERATE": "g", "A3S_DEFAULT_MODEL": "bedrock/claude"}


def service(allowed: str | None) -> Service:
    env = ENV if allowed is None else {**ENV, "A3S_ALLOWED_MODELS": allowed}
    return Service(Runtime(settings=Settings.from_env(env), store=MemoryStore(), queues=MemoryQueues()), "acme")


@pytest.mark.parametrize("allowed", [None, ""])
def test_given_no_allowed_models_when_a_session_names_another_model_then_it_is_refused_naming_the_default(allowed):
    with pytest.raises(BadRequest) as err:
        service(allowed).create_session(CreateSessionBody(model="openai/gpt-4o"))

    assert (err.value.status, err.value.code) == (400, "model_not_allowed")
    assert "openai/gpt-4o" in str(err.value) and "bedrock/claude" in str(err.value)


@pytest.mark.parametrize("allowed", [None, "", "scripted"])
def test_given_any_setting_when_a_session_names_no_model_or_the_default_then_it_gets_the_default(allowed):
    svc = service(allowed)

    assert svc.create_session(CreateSessionBody())["model"] == "bedrock/claude"
    assert svc.create_session(CreateSessionBody(model="bedrock/claude"))["model"] == "bedrock/claude"


def test_given_a_list_when_sessions_name_models_then_listed_ones_and_pattern_matches_pass_and_others_fail():
    svc = service(" scripted , openai/* ")

    assert svc.create_session(CreateSessionBody(model="scripted"))["model"] == "scripted"
    assert svc.create_session(CreateSessionBody(model="openai/gpt-4o-mini"))["model"] == "openai/gpt-4o-mini"
    with pytest.raises(BadRequest, match=r"allowed: bedrock/claude, scripted, openai/\*") as err:
        svc.create_session(CreateSessionBody(model="bedrock/other"))
    assert err.value.code == "model_not_allowed"


def test_given_a_star_when_a_session_names_any_model_then_it_is_accepted():
    assert service("*").create_session(CreateSessionBody(model="anything/at-all"))["model"] == "anything/at-all"
