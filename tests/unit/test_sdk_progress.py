"""Workflow progress: `progress=` on parallel, pipeline and parallel_resumable. A callable gets
(finished, total) updates; True draws a tqdm bar on stderr; False draws nothing; the default draws
a bar only when stderr is a terminal. Checked against a fake service whose workflow finishes one
step per poll."""
from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from a3s_serverless.session import Session

LANES = ("control", "query", "execute", "generate")


class FakeService:
    """Workflows that finish one step each time the client polls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.totals: dict[str, int] = {}

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        self.calls.append((method, path))
        if path.endswith("/workflows"):
            wid = body.get("workflow_id") or f"wf-{len(self.totals)}"
            self.totals[wid] = len(body.get("items") or body.get("specs"))
            return {"workflow_id": wid}
        wid = path.rsplit("/", 1)[1]
        total = self.totals[wid]
        finished = min(total, max(0, query["after_finished"]) + 1)
        done = finished == total
        view = {"workflow_id": wid, "done": done, "finished": finished, "total": total, "status": "running"}
        if done:
            view.update(status="succeeded", outcomes=[{"task_id": f"t{i}", "success": True, "output": "ok"}
                                                      for i in range(total)])
        return view


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def session(service) -> Session:
    return Session(service, {"session_id": "s", "workspace": "/w", "has_queue": False,
                             "lanes": {lane: {"mode": "internal"} for lane in LANES}})


def specs(n: int) -> list[dict]:
    return [{"task_id": f"t{i}", "agent": "general", "prompt": f"p{i}"} for i in range(n)]


def stage(ctx: dict) -> dict:
    return {"task_id": f"s-{ctx['item']}", "agent": "general", "prompt": str(ctx["item"])}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_each(session: Session, **kwargs) -> None:
    session.parallel(specs(4), **kwargs)
    session.pipeline(["a", "b", "c"], [{"agent": "general", "prompt": "{item}"}], **kwargs)
    session.pipeline(["a", "b"], [stage, stage], **kwargs)
    session.parallel_resumable(specs(3), "nightly", **kwargs)


# -- a callable -------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, total", [
    (lambda s, p: s.parallel(specs(4), progress=p), 4),
    (lambda s, p: s.pipeline(["a", "b", "c"], [{"agent": "general", "prompt": "{item}"}], progress=p), 3),
    (lambda s, p: s.pipeline(["a", "b"], [stage, stage], progress=p), 2),
    (lambda s, p: s.parallel_resumable(specs(3), "nightly", progress=p), 3),
])
def test_given_a_callable_then_it_gets_updates_that_only_grow_and_end_at_the_total(session, call, total):
    updates: list[tuple[int, int]] = []
    call(session, lambda finished, n: updates.append((finished, n)))
    assert updates, "no progress update arrived"
    assert all(n == total for _, n in updates), updates
    finished = [f for f, _ in updates]
    assert finished == sorted(finished) and finished[-1] == total, updates


# -- bars on stderr ----------------------------------------------------------------------------------
def test_given_progress_false_then_nothing_is_written_to_stderr_even_on_a_terminal(session, monkeypatch):
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    run_each(session, progress=False)
    assert err.getvalue() == ""


def test_given_the_default_and_no_terminal_then_nothing_is_written_to_stderr(session, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    run_each(session)
    assert err.getvalue() == ""


def test_given_the_default_on_a_terminal_then_a_bar_is_drawn_on_stderr(session, monkeypatch):
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    session.parallel(specs(4))
    assert "4/4" in err.getvalue()


def test_given_progress_true_without_a_terminal_then_a_bar_is_drawn_all_the_same(session, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    session.parallel(specs(2), progress=True)
    assert "2/2" in err.getvalue()


def test_tqdm_is_a_dependency_not_an_accident():
    import tqdm  # noqa: F401  (installed with the SDK)


# -- bad values ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["yes", 1, 0, 0.5, [], object()])
def test_given_a_bad_progress_value_then_each_call_raises_value_error_before_any_request(session, service, bad):
    for call in (lambda: session.parallel(specs(2), progress=bad),
                 lambda: session.pipeline(["a"], [stage], progress=bad),
                 lambda: session.pipeline(["a"], [{"agent": "general", "prompt": "{item}"}], progress=bad),
                 lambda: session.parallel_resumable(specs(2), "wf", progress=bad)):
        service.calls.clear()
        with pytest.raises(ValueError, match="progress"):
            call()
        assert service.calls == []
