"""Runs-queue messages are typed: each kind is a model, a body is read into one or refused with a
reason, and a misspelt field fails where the message is made, not at its last delivery."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from a3s_core.engine.messages import Advance, TaskTimeout, WorkflowStart, WorkflowTimeout, parse, read, wire


@pytest.mark.parametrize("message", [
    Advance(tenant="t", run_id="r"),
    TaskTimeout(tenant="t", session_id="s", task_id="k", run_id="r"),
    WorkflowStart(tenant="t", workflow_id="w"),
    WorkflowTimeout(tenant="t", workflow_id="w"),
])
def test_given_a_message_when_it_travels_as_json_then_it_is_read_back_the_same(message):
    body = json.loads(json.dumps(wire(message)))

    assert parse(body) == message and body["kind"] == message.kind


def test_given_a_misspelt_field_when_a_message_is_made_then_it_fails_there():
    with pytest.raises(ValidationError, match="run_id"):
        Advance(tenant="t", runid="r")  # type: ignore[call-arg]


@pytest.mark.parametrize("body,reason", [
    ({"kind": "teleport", "tenant": "t"}, "unknown runs-queue message kind 'teleport'"),
    ({"tenant": "t", "run_id": "r"}, "unknown runs-queue message kind None"),
    ({"kind": "advance", "tenant": "t"}, "not a runs-queue message: advance.run_id: Field required"),
    ({"kind": "task_timeout", "tenant": "t", "run_id": "r"}, "not a runs-queue message: task_timeout.session_id"),
])
def test_given_a_body_that_is_no_message_then_it_is_refused_with_the_reason(body, reason):
    message, why = read(body)

    assert message is None and why.startswith(reason)


def test_given_a_newer_senders_extra_field_then_the_message_still_reads():
    assert parse({"kind": "advance", "tenant": "t", "run_id": "r", "trace": "x"}) == Advance(tenant="t", run_id="r")
