"""Fixtures for driver-level tests on the moto-backed store: a runtime whose queues only record
messages (the test delivers them, duplicated if it likes) and whose clock the test can move."""
from __future__ import annotations

import dataclasses
import secrets
import time
from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes tens of seconds of real SQS redelivery time (runs by default)")


class Clock:
    """Wall-clock milliseconds, plus whatever the test has moved it forward by."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def advance(self, ms: int) -> None:
        self.offset_ms += ms


@pytest.fixture
def offline_rt(stack):
    """The stack's DynamoDB store (moto), with recorded queues and a movable clock."""
    from a3s_core.engine.queues import MemoryQueues

    return dataclasses.replace(stack.runtime, queues=MemoryQueues(), clock=Clock())


@pytest.fixture
def stack_as_configured(stack):
    """The shared stack with the queue settings it was started with. Another module that provisions
    template.yaml (with its default parameters) into the same process-wide moto backend rewrites
    the queues of the same names, e.g. a 720 s runs-queue visibility timeout, which would turn a 5 s
    redelivery into a 12-minute one; put the stack's own settings back, and say so."""
    import warnings

    from a3s_local.template import provision

    want = str(stack.model.parameters["RunsVisibilityTimeout"])
    got = stack.sqs.get_queue_attributes(QueueUrl=stack.queue_url("RunsQueue"),
                                         AttributeNames=["VisibilityTimeout"])["Attributes"]["VisibilityTimeout"]
    if got != want:
        warnings.warn(f"the runs queue's visibility timeout was changed to {got} s by another test; "
                      f"restoring the stack's {want} s", stacklevel=2)
        provision(stack.model, sqs=stack.sqs, dynamodb=stack.boto.client("dynamodb"), s3=stack.boto.client("s3"))
    return stack


@pytest.fixture
def workspace(stack) -> Path:
    """A workspace directory of a tenant of its own: <root>/<tenant>/ws (the tenant is its parent's name)."""
    ws = Path(stack.runtime.settings.workspace_root) / f"it-{secrets.token_hex(4)}" / "ws"
    ws.mkdir(parents=True)
    return ws
