"""Step outcomes and run_team's state are typed, and still stored and sent as the JSON they were:
a document written before reads back and is written again key for key."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from a3s_core.domain.outcomes import StepOutcome, TeamState

USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
OUTCOMES = {
    "failed-before-it-ran": {"task_id": "t1", "session_id": "task-run-t1", "agent": None, "success": False,
                             "output": "unknown agent 'x'", "error": "unknown agent 'x'", "usage": USAGE},
    "succeeded": {"task_id": "t1", "session_id": "task-run-t1", "agent": "general", "success": True,
                  "output": "done", "run_id": "run-1", "usage": USAGE},
    "structured": {"task_id": "t1", "session_id": "task-run-t1", "agent": "plan", "success": True,
                   "output": "{}", "run_id": "run-1", "usage": USAGE, "structured": {"tasks": [None, 1]}},
    "failed-run": {"task_id": "t1", "session_id": "task-run-t1", "agent": "general", "success": False,
                   "output": "model error", "run_id": "run-1", "usage": USAGE, "error": "model error"},
}
TEAMS = {
    "lead": {"phase": "lead", "round": 0, "tasks": [], "wid": "wf-1"},
    "work": {"phase": "work", "round": 1, "wid": "wf-2", "tasks": [
        {"id": "a", "description": "do a", "approved": False}]},
    "review": {"phase": "review", "round": 1, "wid": "wf-3", "tasks": [
        {"id": "a", "description": "do a", "approved": False, "work": "(no output)", "run_id": None}]},
    "reviewed": {"phase": "review", "round": 2, "wid": "wf-4", "tasks": [
        {"id": "a", "description": "do a", "approved": True, "work": "done", "run_id": "run-2", "feedback": "ok"}]},
    "stopped": {"phase": "lead", "round": 0, "tasks": [], "wid": "wf-1", "error": "the lead did not produce a task list"},
}


@pytest.mark.parametrize("stored", OUTCOMES.values(), ids=OUTCOMES.keys())
def test_a_stored_step_outcome_reads_back_and_is_written_again_key_for_key(stored):
    assert StepOutcome.model_validate(stored).wire() == stored


@pytest.mark.parametrize("stored", TEAMS.values(), ids=TEAMS.keys())
def test_a_stored_team_state_reads_back_and_is_written_again_key_for_key(stored):
    state = TeamState.model_validate(stored)
    assert state.model_dump(mode="json") == stored
    assert TeamState.model_validate_json(state.model_dump_json()) == state


def test_a_step_outcome_with_a_key_no_outcome_has_is_refused():
    with pytest.raises(ValidationError, match="extra"):
        StepOutcome.model_validate({**OUTCOMES["succeeded"], "surprise": 1})
