"""Commands run isolated: a scrubbed environment, nothing left running, output capped as it is
read, temporary directories removed."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from a3s_core.tools import isolation


def _alive(marker: str) -> list[int]:
    """Processes whose command line holds the marker."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and "pgrep" not in cmdline:
                found.append(int(entry))
    return found


def test_given_secrets_in_the_callers_environment_when_a_command_prints_env_then_none_is_there(
        monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-aws")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "s3cr3t-token")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-s3cr3t")
    monkeypatch.setenv("A3S_TABLE", "the-table")
    out = isolation.run("env", tmp_path, 10_000)
    assert out["exit_code"] == 0 and "PATH=" in out["output"]
    for leak in ("s3cr3t", "AWS_", "OPENAI", "A3S_", "the-table"):
        assert leak not in out["output"]


def test_given_a_command_that_escapes_its_group_with_setsid_when_it_ends_then_nothing_it_started_survives(tmp_path):
    marker = "31.4159"
    out = isolation.run(f"setsid sleep {marker} & (sleep {marker} &) ; nohup sleep {marker} >/dev/null 2>&1 & echo up",
                        tmp_path, 10_000)
    assert out["output"] == "up\n"
    assert _alive(f"sleep {marker}") == []


def test_given_a_command_that_runs_too_long_when_the_timeout_passes_then_it_and_its_children_are_killed(tmp_path):
    marker = "27.1828"
    started = time.monotonic()
    out = isolation.run(f"setsid sleep {marker} & echo partial; sleep {marker}", tmp_path, 500)
    assert out["timed_out"] and out["output"] == "partial\n"
    assert time.monotonic() - started < 10
    assert _alive(f"sleep {marker}") == []


def test_given_200_mb_of_output_when_read_then_only_the_cap_is_kept_and_the_rest_is_counted(tmp_path):
    out = isolation.run("head -c 200000000 /dev/zero | tr '\\0' a", tmp_path, 60_000)
    assert out["output"] == "a" * isolation.OUTPUT_CHARS
    assert out["dropped"] == 200_000_000 - isolation.OUTPUT_CHARS
    assert out["exit_code"] == 0


def test_given_a_command_that_writes_to_its_home_and_tmp_when_it_ends_then_they_are_removed(tmp_path):
    out = isolation.run('echo "$HOME"; touch "$HOME/left" "$TMPDIR/behind"', tmp_path, 10_000)
    home = out["output"].strip()
    assert re.fullmatch(r"/.*a3s-tool-\w+", home)
    assert not Path(home).exists()


def test_given_a_command_that_closes_its_output_early_when_it_goes_on_then_its_exit_code_is_kept(tmp_path):
    out = isolation.run("echo early; exec >&-; sleep 0.2; exit 3", tmp_path, 10_000)
    assert out == {"output": "early\n", "exit_code": 3, "timed_out": False, "dropped": 0}


def test_given_workspace_relative_names_then_only_plain_ones_are_safe_for_the_sandbox() -> None:
    from a3s_core.tools.sandbox import _safe

    assert all(_safe(p) for p in ("a.txt", "src/x.py", "..hidden", "a/..b/c"))
    assert not any(_safe(p) for p in ("", ".", "..", "../x", "/etc/passwd", "a/../b", "a//b", "./a", "a\x00b"))


def test_given_a_limit_then_a_commands_timeout_is_cut_to_it_whatever_number_it_was_given() -> None:
    from a3s_core.tools.sandbox import within

    assert within({"command": "x"}, 5_000) == {"command": "x", "timeout_ms": 5_000}  # the default is longer
    assert within({"command": "x", "timeout_ms": 600000.0}, 5_000)["timeout_ms"] == 5_000
    assert within({"command": "x", "timeout_ms": 200}, 5_000)["timeout_ms"] == 200
    assert within({"command": "x", "timeout_ms": "soon"}, 5_000) == {"command": "x", "timeout_ms": "soon"}
