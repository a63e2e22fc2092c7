"""The workflow timeline of `a3s workflows show`: one row per step, bars on one time axis."""
from __future__ import annotations

from a3s_serverless.cli.timeline import ASCII, render


def _step(key, status, start, end):
    return {"key": key, "index": 0, "attempt": 1, "status": status, "run_id": None,
            "started_at": start, "finished_at": end, "agent": None, "error": None}


def test_given_steps_when_rendered_then_each_bar_spans_its_share_of_the_common_axis():
    steps = [_step("first", "succeeded", 1000, 2000), _step("second", "failed", 2000, 3000),
             _step("later", "pending", None, None)]
    *rows, axis = render(steps, now_ms=9999, width=20, chars=ASCII)

    assert [r.split()[0:2] for r in rows] == [["first", "succeeded"], ["second", "failed"], ["later", "pending"]]
    bars = [r[r.index("|") + 1:r.rindex("|")] for r in rows]
    assert bars == ["#" * 10 + " " * 10, " " * 10 + "x" * 10, " " * 20]  # 2 s axis, 1 s each
    assert [r.split()[-2:] for r in rows[:2]] == [["1.0", "s"], ["1.0", "s"]] and rows[2].endswith("-")
    assert axis.strip() == "0" + " " * 14 + "2.0 s" and axis.index("0") == rows[0].index("|") + 1


def test_given_a_running_step_when_rendered_then_its_bar_runs_to_now_and_a_blip_still_shows():
    steps = [_step("slow", "running", 0, None), _step("blip", "succeeded", 500, 501)]
    rows = render(steps, now_ms=4000, width=8, chars=ASCII)[:2]

    assert rows[0][rows[0].index("|"):].startswith("|--------|") and rows[0].endswith("4.0 s")
    assert "|" + " " + "#" + " " * 6 + "|" in rows[1] and rows[1].endswith("1 ms")


def test_given_no_step_started_when_rendered_then_rows_have_no_bars_and_the_axis_says_so():
    *rows, axis = render([_step("a", "pending", None, None)], now_ms=5, width=5, chars=ASCII)
    assert rows == ["a  pending    |     |         -"] and axis.strip().endswith("not started")
