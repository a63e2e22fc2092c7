"""Fixtures for driver-level tests on the moto-backed store: a runtime whose queues only record
messages (the test delivers them, duplicated if it likes) and whose clock the test can move."""
from __future__ import annotations

import dataclasses
import time

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
    from a3s_core.queues import MemoryQueues

    return dataclasses.replace(stack.runtime, queues=MemoryQueues(), clock=Clock())
