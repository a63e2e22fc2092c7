"""The skill catalogue: the shipped documents, then the deployment's, then the session's."""
from __future__ import annotations

import json

from a3s_core.domain import skills


def test_given_every_source_then_later_ones_override_earlier_ones_by_name() -> None:
    deployment = json.dumps({"code-review": {"description": "ours", "content": "our way"},
                             "deploy": {"description": "d", "content": "c"}})
    cat = skills.catalogue(True, deployment, {"deploy": {"description": "session's", "content": "mine"}})
    assert cat["code-review"] == {"description": "ours", "content": "our way"}
    assert cat["deploy"]["content"] == "mine"
    assert cat["write-tests"]["content"].startswith("# Writing tests")


def test_given_no_builtins_then_only_the_deployments_and_sessions_skills() -> None:
    assert skills.catalogue(False, "", {}) == {}
    assert set(skills.catalogue(False, json.dumps({"a": {"description": "x", "content": "y"}}), {})) == {"a"}


def test_given_an_unknown_name_when_loaded_then_a_tool_error_naming_the_choices() -> None:
    out = skills.use({"a": {"description": "x", "content": "y"}}, {"name": "b"})
    assert out.is_error and out.content == "unknown skill 'b': expected one of a"


def test_given_a_malformed_deployment_catalogue_then_it_adds_nothing_and_breaks_nothing() -> None:
    for raw in ("{not json", "[1, 2]", json.dumps({"a": "not an object"})):
        assert skills.catalogue(False, raw, {}) == {}
