"""Agent.create reads A3S Code's own config shapes (HCL `providers { name = ... }` and ACL
`providers "name" { ... }`), maps their model to the kit's model names, and refuses, with the key
and its line, whatever the kit does not know or cannot honour."""
from __future__ import annotations

import warnings

import pytest

from a3s_serverless import Agent
from a3s_serverless.config import load_config

# A3S Code's HCL shape: unlabelled providers with `name`, models with `id`.
A3S_HCL = '''
default_model = "deepseek/deepseek-chat"

providers {
  name = "deepseek"

  models {
    id        = "deepseek-chat"
    name      = "DeepSeek Chat"
    family    = "deepseek"
    tool_call = true
    limit     = { context = 64000, output = 8192 }
  }
}
'''

# A3S Code's ACL shape: labelled blocks, camelCase aliases, model metadata blocks.
A3S_ACL = '''
default_model      = "ollama/llama3.1"
max_parallel_tasks = 3

providers "ollama" {
  models "llama3.1" {
    name     = "Llama 3.1"
    toolCall = true
    modalities {
      input  = ["text"]
      output = ["text"]
    }
  }
}
'''


@pytest.fixture(autouse=True)
def no_endpoint_env(monkeypatch):
    monkeypatch.delenv("A3S_ENDPOINT", raising=False)
    monkeypatch.delenv("A3S_API_KEY", raising=False)


# -- A3S Code shapes -------------------------------------------------------------------------------
def test_given_an_a3s_hcl_config_then_its_openai_compatible_model_becomes_the_kits_openai_model():
    cfg = load_config(A3S_HCL)
    assert (cfg.endpoint, cfg.default_model) == ("local", "openai/deepseek-chat")


def test_given_an_a3s_acl_config_then_labelled_blocks_and_max_parallel_tasks_are_read():
    cfg = load_config(A3S_ACL)
    assert (cfg.default_model, cfg.max_parallel_tasks) == ("openai/llama3.1", 3)


def test_given_an_openai_provider_then_the_model_keeps_its_name():
    cfg = load_config('default_model = "openai/gpt-4o"\nproviders "openai" {\n  models "gpt-4o" {}\n}\n')
    assert cfg.default_model == "openai/gpt-4o"


@pytest.mark.parametrize("model", ["anthropic.claude-3-5-sonnet-20240620-v1:0",
                                   "us.anthropic.claude-3-5-haiku-20241022-v1:0"])
def test_given_an_anthropic_provider_with_a_bedrock_model_id_then_it_runs_on_bedrock(model):
    cfg = load_config(f'default_model = "anthropic/{model}"\nproviders {{\n  name = "anthropic"\n}}\n')
    assert cfg.default_model == f"bedrock/{model}"


def test_given_an_anthropic_api_model_id_then_create_refuses_it_with_the_line_and_the_bedrock_way():
    text = '\ndefault_model = "anthropic/claude-sonnet-4-20250514"\nproviders {\n  name = "anthropic"\n}\n'
    with pytest.raises(ValueError, match=r"line 2.*default_model.*Bedrock"):
        load_config(text)


@pytest.mark.parametrize("key", ["api_key", "apiKey", "base_url", "baseUrl", "headers"])
def test_given_provider_credentials_or_urls_then_create_refuses_them_naming_key_and_line(key):
    value = '{ X = "y" }' if key == "headers" else '"https://llm.example/v1"'
    text = f'default_model = "openai/gpt-4o"\n\nproviders "openai" {{\n  {key} = {value}\n}}\n'
    with pytest.raises(ValueError, match=rf"line 4.*{key}.*deployment"):
        load_config(text)


def test_given_a_model_level_base_url_then_create_refuses_it_too():
    text = 'default_model = "openai/m"\nproviders "openai" {\n  models "m" {\n    base_url = "http://x"\n  }\n}\n'
    with pytest.raises(ValueError, match=r"line 4.*base_url"):
        load_config(text)


def test_given_a_storage_backend_then_it_is_accepted_with_a_warning():
    with pytest.warns(UserWarning, match="storage_backend"):
        cfg = load_config('default_model = "scripted"\nstorage_backend = "file"\nsessions_dir = "./.a3s"\n')
    assert cfg.default_model == "scripted"


def test_given_a_model_name_without_a_provider_block_then_the_kits_own_names_pass_unchanged():
    for name in ("scripted", "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", "openai/gpt-4o-mini"):
        assert load_config(f'default_model = "{name}"\n').default_model == name


# -- the kit's own keys still work ------------------------------------------------------------------
def test_given_the_kits_own_keys_then_they_are_read_as_before(monkeypatch):
    monkeypatch.setenv("MY_KIT_KEY", "k-1")
    cfg = load_config('endpoint = "https://api.example/prod"\napi_key = env("MY_KIT_KEY")\n'
                      'default_model = "scripted"\n')
    assert (cfg.endpoint, cfg.api_key, cfg.default_model) == ("https://api.example/prod", "k-1", "scripted")


def test_given_the_examples_config_then_it_loads_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_config('endpoint      = "local"\ndefault_model = "scripted"\n')
    assert (cfg.endpoint, cfg.default_model) == ("local", "scripted")


# -- refusals name the key and its line --------------------------------------------------------------
def test_given_an_unknown_top_level_key_then_create_names_it_and_its_line():
    with pytest.raises(ValueError, match=r"line 3.*'colour'"):
        load_config('endpoint = "local"\n# a comment\ncolour = "blue"\n')


def test_given_an_unknown_key_inside_a_provider_then_create_names_it_and_its_line():
    with pytest.raises(ValueError, match=r"line 5.*'temperatur'"):
        load_config('default_model = "openai/m"\nproviders "openai" {\n  models "m" {\n    name = "M"\n'
                    '    temperatur = true\n  }\n}\n')


def test_given_an_a3s_setting_the_kit_does_not_support_then_create_says_so_with_the_line():
    with pytest.raises(ValueError, match=r"line 2.*'queue'.*not supported"):
        load_config('default_model = "scripted"\nqueue {\n  enabled = true\n}\n')


def test_given_a_key_set_twice_then_create_names_both_lines():
    with pytest.raises(ValueError, match=r"line 3.*default_model.*line 1"):
        load_config('default_model = "scripted"\nendpoint = "local"\ndefault_model = "openai/x"\n')


def test_given_a_provider_block_without_a_name_then_create_refuses_it_with_its_line():
    with pytest.raises(ValueError, match=r"line 2.*providers.*name"):
        load_config('default_model = "scripted"\nproviders {\n  models { id = "m" }\n}\n')


def test_given_a_non_string_default_model_then_create_refuses_it_with_its_line():
    with pytest.raises(ValueError, match=r"line 1.*default_model.*string"):
        load_config('default_model = 5\n')


@pytest.mark.parametrize("text, line", [('endpoint = "local"\ndefault_model = \n', 2),
                                        ('default_model = "x"\n\nproviders "a" {\n  models "m" {\n', 5)])
def test_given_bad_hcl_then_create_says_it_is_not_valid_hcl_with_the_line(text, line):
    with pytest.raises(ValueError, match=rf"not valid HCL.*line {line}"):
        load_config(text)


def test_given_an_a3s_default_model_without_a_slash_then_create_refuses_it():
    with pytest.raises(ValueError, match="default_model"):
        load_config('default_model = "gpt-4o"\nproviders "openai" {}\n')


# -- Agent.create uses it ------------------------------------------------------------------------------
def test_given_an_a3s_config_when_agent_create_runs_then_sessions_get_the_mapped_model(monkeypatch):
    seen: dict = {}

    def local(cls, default_model=None, **_):
        seen["default_model"] = default_model
        return Agent(Recorder(), default_model)

    monkeypatch.setattr(Agent, "local", classmethod(local))
    agent = Agent.create(A3S_ACL)
    assert seen == {"default_model": "openai/llama3.1"}
    agent.session("/w")
    body = agent._t.calls[-1][2]
    assert (body["model"], body["max_parallel_tasks"]) == ("openai/llama3.1", 3)


def test_given_an_a3s_provider_when_a_session_names_one_of_its_models_then_it_is_mapped_too(monkeypatch):
    monkeypatch.setattr(Agent, "local", classmethod(lambda cls, default_model=None, **_: Agent(Recorder(), default_model)))
    agent = Agent.create(A3S_HCL)
    agent.session("/w", model="deepseek/deepseek-reasoner")
    assert agent._t.calls[-1][2]["model"] == "openai/deepseek-reasoner"


class Recorder:
    def __init__(self) -> None:
        self.calls: list = []

    def request(self, method, path, body=None, query=None):
        self.calls.append((method, path, body))
        return {"session_id": "s", "workspace": "/w", "has_queue": False,
                "lanes": {lane: {"mode": "internal"} for lane in ("control", "query", "execute", "generate")}}
