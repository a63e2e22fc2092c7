"""parallel_task takes 2 to 32 tasks, each with a prompt: the bounds themselves, before any child starts."""
from __future__ import annotations

import pytest

from a3s_core.domain.items import PendingCall
from a3s_core.engine.delegation import check


def parallel(count: int, prompt: str = "p") -> PendingCall:
    tasks = [{"agent": "general", "prompt": prompt} for _ in range(count)]
    return PendingCall(id="c1", name="parallel_task", arguments={"tasks": tasks}, lane="execute")


@pytest.mark.parametrize("count", [2, 32])
def test_given_2_or_32_tasks_then_parallel_task_is_accepted(count):
    assert check(parallel(count)) is None


@pytest.mark.parametrize("count", [0, 1, 33, 100])
def test_given_fewer_than_2_or_more_than_32_tasks_then_parallel_task_is_refused(count):
    assert check(parallel(count)) == "parallel_task needs between 2 and 32 tasks"


def test_given_tasks_that_are_not_a_list_or_a_task_without_a_prompt_then_it_is_refused():
    assert check(PendingCall(id="c", name="parallel_task", arguments={"tasks": "two"}, lane="execute")) == \
        "parallel_task needs between 2 and 32 tasks"
    assert check(parallel(2, prompt="  ")) == "every parallel_task task needs a prompt"
