"""Built-in tools against a local workspace: results, tool errors, and the workspace boundary."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from a3s_core.tools.builtin import TOOL_SCHEMAS, ToolError, run_tool
from a3s_core.workspace.base import LocalWorkspace, WorkspaceError


@pytest.fixture
def ws(tmp_path: Path) -> LocalWorkspace:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("import os\n\ndef main():\n    return 42\n")
    (tmp_path / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    return LocalWorkspace(tmp_path)


class NoDirWorkspace(LocalWorkspace):
    """A workspace that is not on a local directory (as on S3)."""

    def root_dir(self) -> Path | None:
        return None


# -- schemas and dispatch ---------------------------------------------------------------


def test_given_the_tool_table_when_listed_then_it_has_the_a3s_names_with_required_args():
    assert set(TOOL_SCHEMAS) == {"read", "write", "edit", "ls", "glob", "grep", "bash"}
    assert TOOL_SCHEMAS["edit"]["input_schema"]["required"] == ["file_path", "old_string", "new_string"]
    assert all({"name", "description", "input_schema"} <= s.keys() for s in TOOL_SCHEMAS.values())


def test_given_an_unknown_tool_when_run_then_tool_error_names_it(ws):
    with pytest.raises(ToolError, match="unknown tool 'fly'"):
        run_tool("fly", {}, ws)


def test_given_a_missing_required_argument_when_run_then_tool_error_explains(ws):
    with pytest.raises(ToolError, match="invalid arguments for write: 'content' is a required property"):
        run_tool("write", {"file_path": "a.txt"}, ws)


def test_given_an_argument_of_the_wrong_type_when_run_then_tool_error_names_the_argument(ws):
    with pytest.raises(ToolError, match="invalid arguments for read: offset: 'one' is not of type 'integer'"):
        run_tool("read", {"file_path": "notes.txt", "offset": "one"}, ws)


# -- workspace boundary -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "src/../../outside.txt"])
def test_given_a_path_outside_the_workspace_when_read_then_refused(ws, path):
    with pytest.raises(ToolError, match="is outside the workspace"):
        run_tool("read", {"file_path": path}, ws)


def test_given_a_path_outside_the_workspace_when_written_then_refused_and_nothing_is_written(ws, tmp_path):
    with pytest.raises(ToolError, match="is outside the workspace"):
        run_tool("write", {"file_path": "../escaped.txt", "content": "x"}, ws)
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_given_a_symlink_pointing_outside_when_read_then_refused(ws, tmp_path_factory):
    secret = tmp_path_factory.mktemp("elsewhere") / "secret.txt"
    secret.write_text("top secret")
    link = ws.root_dir() / "link.txt"
    link.symlink_to(secret)

    with pytest.raises(ToolError, match="outside the workspace"):
        run_tool("read", {"file_path": "link.txt"}, ws)


def test_given_a_symlinked_directory_pointing_outside_when_writing_through_it_then_refused(ws, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (ws.root_dir() / "out").symlink_to(outside, target_is_directory=True)

    with pytest.raises(WorkspaceError, match="path 'out/x.txt' is outside the workspace"):
        ws.resolve("out/x.txt")
    assert not (outside / "x.txt").exists()


def test_given_an_absolute_path_inside_the_workspace_when_resolved_then_accepted(ws):
    assert ws.resolve(str(ws.root_dir() / "notes.txt")) == ws.root_dir() / "notes.txt"


# -- read -------------------------------------------------------------------------------


def test_given_a_file_when_read_then_lines_are_numbered_like_cat_n(ws):
    assert run_tool("read", {"file_path": "notes.txt"}, ws) == {"output": "     1\talpha\n     2\tbeta\n     3\tgamma"}


def test_given_offset_and_limit_when_read_then_only_that_window_with_a_continuation_hint(ws):
    out = run_tool("read", {"file_path": "notes.txt", "offset": 2, "limit": 1}, ws)["output"]

    assert out == "     2\tbeta\n[1 more lines; continue with offset=3]"


def test_given_a_missing_file_when_read_then_tool_error(ws):
    with pytest.raises(ToolError, match="file not found: 'nope.txt'"):
        run_tool("read", {"file_path": "nope.txt"}, ws)


def test_given_an_offset_past_the_end_when_read_then_tool_error(ws):
    with pytest.raises(ToolError, match="offset 10 is past the end"):
        run_tool("read", {"file_path": "notes.txt", "offset": 10}, ws)


# -- write / edit -----------------------------------------------------------------------


def test_given_a_new_nested_path_when_written_then_parents_are_created_and_bytes_reported(ws, tmp_path):
    result = run_tool("write", {"file_path": "a/b/c.txt", "content": "héllo"}, ws)

    assert result == {"output": "wrote 6 bytes to a/b/c.txt"}
    assert (tmp_path / "a" / "b" / "c.txt").read_text(encoding="utf-8") == "héllo"


def test_given_a_unique_old_string_when_edited_then_it_is_replaced(ws, tmp_path):
    run_tool("edit", {"file_path": "src/app.py", "old_string": "return 42", "new_string": "return 7"}, ws)

    assert "return 7" in (tmp_path / "src" / "app.py").read_text()


def test_given_an_absent_old_string_when_edited_then_tool_error_and_file_unchanged(ws, tmp_path):
    with pytest.raises(ToolError, match="was not found .* must occur exactly once"):
        run_tool("edit", {"file_path": "notes.txt", "old_string": "delta", "new_string": "x"}, ws)
    assert (tmp_path / "notes.txt").read_text() == "alpha\nbeta\ngamma\n"


def test_given_a_repeated_old_string_when_edited_then_tool_error_says_how_many(ws, tmp_path):
    with pytest.raises(ToolError, match="occurs 3 times"):
        run_tool("edit", {"file_path": "notes.txt", "old_string": "a\n", "new_string": "A\n"}, ws)
    assert (tmp_path / "notes.txt").read_text() == "alpha\nbeta\ngamma\n"


# -- ls / glob / grep -------------------------------------------------------------------


def test_given_a_directory_when_listed_then_sorted_entries_with_dirs_marked(ws):
    assert run_tool("ls", {}, ws) == {"output": "notes.txt\nsrc/"}
    assert run_tool("ls", {"path": "src"}, ws) == {"output": "app.py"}


def test_given_a_file_path_when_listed_then_tool_error(ws):
    with pytest.raises(ToolError, match="is not a directory"):
        run_tool("ls", {"path": "notes.txt"}, ws)


def test_given_a_recursive_pattern_when_globbed_then_sorted_relative_paths(ws):
    run_tool("write", {"file_path": "src/pkg/util.py", "content": ""}, ws)

    assert run_tool("glob", {"pattern": "**/*.py"}, ws) == {"output": "src/app.py\nsrc/pkg/util.py"}


def test_given_no_match_when_globbed_then_output_says_so(ws):
    assert run_tool("glob", {"pattern": "*.rs"}, ws) == {"output": "no files match '*.rs'"}


def test_given_an_absolute_pattern_when_globbed_then_tool_error(ws):
    with pytest.raises(ToolError, match="relative to the workspace"):
        run_tool("glob", {"pattern": "/etc/*"}, ws)


def test_given_a_regex_when_grepped_then_path_lineno_line_and_binary_files_skipped(ws, tmp_path):
    (tmp_path / "blob.bin").write_bytes(b"\x00\xffreturn 42\x00")
    (tmp_path / "zero.dat").write_bytes(b"return\x00")

    out = run_tool("grep", {"pattern": r"return \d+|^al"}, ws)["output"]

    assert out == "notes.txt:1:alpha\nsrc/app.py:4:    return 42"


def test_given_a_subdirectory_when_grepped_then_only_it_is_searched(ws):
    assert run_tool("grep", {"pattern": "a|r", "path": "src"}, ws)["output"].splitlines() == [
        "src/app.py:1:import os",
        "src/app.py:3:def main():",
        "src/app.py:4:    return 42",
    ]


def test_given_many_matches_when_grepped_then_capped_at_500(ws):
    run_tool("write", {"file_path": "big.txt", "content": "hit\n" * 600}, ws)

    lines = run_tool("grep", {"pattern": "hit", "path": "big.txt"}, ws)["output"].splitlines()

    assert len(lines) == 501
    assert lines[-1] == "[match limit 500 reached]"


def test_given_an_invalid_regex_when_grepped_then_tool_error(ws):
    with pytest.raises(ToolError, match="invalid regular expression"):
        run_tool("grep", {"pattern": "("}, ws)


def test_given_no_match_when_grepped_then_output_says_so(ws):
    assert run_tool("grep", {"pattern": "zebra"}, ws) == {"output": "no matches"}


# -- bash -------------------------------------------------------------------------------


def test_given_a_command_when_run_then_combined_output_and_exit_code_in_workspace_dir(ws, tmp_path):
    result = run_tool("bash", {"command": "pwd; echo oops >&2; exit 3"}, ws)

    assert result == {"output": f"{tmp_path.resolve()}\noops\n", "exit_code": 3}


def test_given_a_slow_command_when_it_exceeds_its_timeout_then_tool_error_and_process_group_killed(ws, tmp_path):
    start = time.monotonic()

    with pytest.raises(ToolError, match="timed out after 300 ms"):
        run_tool("bash", {"command": "sh -c 'echo $$ > child.pid; exec sleep 5' & sleep 5", "timeout_ms": 300}, ws)

    assert time.monotonic() - start < 2
    child = int((tmp_path / "child.pid").read_text())
    assert _gone_or_zombie(child)


def _gone_or_zombie(pid: int) -> bool:
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_given_huge_output_when_run_then_it_is_capped_with_a_truncation_marker(ws):
    out = run_tool("bash", {"command": "head -c 40000 /dev/zero | tr '\\0' a"}, ws)["output"]

    assert out == "a" * 30000 + "\n[truncated 10000 bytes]"


def test_given_a_workspace_without_a_local_directory_when_bash_runs_then_tool_error(tmp_path):
    with pytest.raises(ToolError, match="bash needs a local directory or an external execute lane"):
        run_tool("bash", {"command": "echo hi"}, NoDirWorkspace(tmp_path))


# -- faults: whatever goes wrong in a tool is a tool error the model sees ------------------------


def test_given_a_double_star_inside_a_segment_when_globbed_then_it_matches_like_a_single_star(ws):
    run_tool("write", {"file_path": "src/pkg/util.py", "content": ""}, ws)

    # pathlib refuses `**` that is not a whole segment; shells (globstar) read it as `*`.
    assert run_tool("glob", {"pattern": "src/**.py"}, ws) == {"output": "src/app.py"}
    assert run_tool("glob", {"pattern": "**/**.py"}, ws) == {"output": "src/app.py\nsrc/pkg/util.py"}


@pytest.mark.parametrize("name,args", [
    ("read", {"file_path": "notes\x00.txt"}),
    ("write", {"file_path": "a\x00b.txt", "content": "x"}),
    ("edit", {"file_path": "notes.txt\x00", "old_string": "alpha", "new_string": "x"}),
    ("ls", {"path": "src\x00"}),
    ("glob", {"pattern": "src/\x00*.py"}),
    ("grep", {"pattern": "alpha", "path": "notes\x00.txt"}),
])
def test_given_a_nul_byte_in_a_path_when_a_tool_runs_then_tool_error_says_so(ws, name, args):
    with pytest.raises(ToolError, match="NUL byte"):
        run_tool(name, args, ws)


def test_given_a_lone_surrogate_in_content_when_written_then_tool_error_and_nothing_is_written(ws, tmp_path):
    with pytest.raises(ToolError, match="not valid Unicode"):
        run_tool("write", {"file_path": "s.txt", "content": "ok \ud800 then"}, ws)

    assert not (tmp_path / "s.txt").exists()


def test_given_a_tool_that_raises_anything_when_run_then_tool_error_names_the_tool_and_the_exception(
        ws, monkeypatch):
    from a3s_core.tools import builtin as tools

    def broken(args, workspace):
        raise KeyError("surprise")

    monkeypatch.setitem(tools._TOOLS, "ls", broken)

    with pytest.raises(ToolError, match=r"^ls failed: KeyError: 'surprise'$"):
        run_tool("ls", {}, ws)
