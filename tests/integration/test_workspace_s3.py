"""S3Workspace in moto: the Workspace protocol on an S3 prefix, the built-in tools run against it,
the workspace boundary, prefix isolation and paginated listings."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a3s_core.tools.builtin import ToolError, run_tool
from a3s_core.workspace.base import LocalWorkspace, WorkspaceError
from a3s_core.workspace.s3 import CONTENT_TYPE, S3Workspace

REGION = "us-east-1"
# One bucket per test: under the session-wide embedded stack, moto's state outlives a test.
BUCKET = f"a3s-workspaces-{uuid.uuid4().hex[:8]}"

FILES = {
    "notes.txt": "alpha\nbeta\ngamma\n",
    "b.txt": "bee\n",
    "src/app.py": "import os\n\ndef main():\n    return 42\n",
    "src/util.py": "def helper():\n    return 'beta'\n",
    "src/pkg/deep.py": "# deep\nBETA = 'beta'\n",
    "src/pkg/data.json": '{"beta": true}\n',
    "docs/readme.md": "# Read me\n",
    ".hidden/x.py": "hidden = 1\n",
}


@pytest.fixture
def s3() -> Iterator[Any]:
    """A moto S3 client with fake credentials (never real ones) and an empty bucket."""
    import boto3
    from moto import mock_aws

    global BUCKET
    BUCKET = f"a3s-workspaces-{uuid.uuid4().hex[:8]}"
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


def put(client: Any, key: str, body: str | bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=key, Body=body.encode("utf-8") if isinstance(body, str) else body)


@pytest.fixture
def ws(s3) -> S3Workspace:
    for rel, text in FILES.items():
        put(s3, f"tenant/session-1/{rel}", text)
    return S3Workspace(s3, BUCKET, "tenant/session-1")


def count_list_calls(client: Any) -> list[int]:
    calls: list[int] = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: calls.append(1))
    return calls


# -- construction and paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [("ws/a", "ws/a/"), ("ws/a/", "ws/a/"), ("/ws/a//", "ws/a/"), ("", ""), ("/", "")],
)
def test_given_a_prefix_when_constructed_then_it_is_normalised_to_end_with_a_slash(s3, given, expected):
    assert S3Workspace(s3, BUCKET, given).prefix == expected


def test_given_a_page_size_out_of_range_when_constructed_then_refused(s3):
    with pytest.raises(ValueError, match="page_size"):
        S3Workspace(s3, BUCKET, "p", page_size=0)


def test_given_an_s3_workspace_when_asked_for_its_root_dir_then_none(ws):
    assert ws.root_dir() is None


@pytest.mark.parametrize(
    "path, expected",
    [("", "."), (".", "."), ("/", "."), ("src/app.py", "src/app.py"), ("/src/app.py", "src/app.py"),
     ("src/./pkg/../app.py", "src/app.py"), ("src//pkg/", "src/pkg"), ("a/..", ".")],
)
def test_given_a_path_when_made_relative_then_it_is_normalised_and_absolute_means_the_root(ws, path, expected):
    assert ws.relative(path) == expected


@pytest.mark.parametrize("path", ["../../etc/passwd", "a/../../b", "..", "/../x", "src/../../outside.txt"])
def test_given_a_path_that_escapes_when_used_then_every_method_refuses(ws, path):
    message = f"path '{path}' is outside the workspace"
    for call in (ws.relative, ws.read_text, ws.exists, ws.is_dir, ws.list_dir):
        with pytest.raises(WorkspaceError, match=message.replace(".", r"\.")):
            call(path)
    with pytest.raises(WorkspaceError, match="is outside the workspace"):
        ws.write_text(path, "x")


def test_given_an_absolute_path_when_read_then_it_is_taken_relative_to_the_workspace_root(ws):
    assert ws.read_text("/src/app.py") == FILES["src/app.py"]


# -- read_text / write_text ---------------------------------------------------------------


def test_given_a_file_when_read_then_its_text(ws):
    assert ws.read_text("notes.txt") == "alpha\nbeta\ngamma\n"
    assert ws.read_text("src/pkg/deep.py") == FILES["src/pkg/deep.py"]


def test_given_a_missing_file_when_read_then_the_local_workspace_message(ws, tmp_path):
    with pytest.raises(WorkspaceError) as s3_err:
        ws.read_text("nope/missing.txt")
    with pytest.raises(WorkspaceError) as local_err:
        LocalWorkspace(tmp_path).read_text("nope/missing.txt")
    assert str(s3_err.value) == str(local_err.value) == "file not found: 'nope/missing.txt'"


@pytest.mark.parametrize("path", ["src", "src/", "src/pkg", ".", "/"])
def test_given_a_directory_when_read_then_refused_as_a_directory(ws, path):
    with pytest.raises(WorkspaceError, match=f"^'{path}' is a directory$".replace(".", r"\.")):
        ws.read_text(path)


def test_given_a_non_utf8_object_when_read_then_a_clear_error(s3, ws):
    put(s3, "tenant/session-1/blob.bin", b"\xff\xfe\x00binary")
    with pytest.raises(WorkspaceError, match="^'blob.bin' is not a UTF-8 text file$"):
        ws.read_text("blob.bin")


def test_given_crlf_text_when_read_then_newlines_are_universal_as_in_the_local_workspace(s3, ws, tmp_path):
    put(s3, "tenant/session-1/dos.txt", "one\r\ntwo\rthree\n")
    (tmp_path / "dos.txt").write_bytes(b"one\r\ntwo\rthree\n")
    assert ws.read_text("dos.txt") == LocalWorkspace(tmp_path).read_text("dos.txt") == "one\ntwo\nthree\n"


def test_given_text_when_written_then_the_object_is_utf8_text_under_the_prefix(s3, ws):
    ws.write_text("new/dir/file.md", "héllo ✓\r\n")
    obj = s3.get_object(Bucket=BUCKET, Key="tenant/session-1/new/dir/file.md")
    assert obj["Body"].read() == "héllo ✓\r\n".encode()
    assert obj["ContentType"] == CONTENT_TYPE == "text/plain; charset=utf-8"
    assert ws.is_dir("new") and ws.is_dir("new/dir")


def test_given_an_existing_file_when_written_then_replaced(ws):
    ws.write_text("notes.txt", "replaced")
    assert ws.read_text("notes.txt") == "replaced"


def test_given_a_directory_when_written_then_refused(ws):
    with pytest.raises(WorkspaceError, match="^'src' is a directory$"):
        ws.write_text("src", "x")
    with pytest.raises(WorkspaceError, match=r"^'\.' is a directory$"):
        ws.write_text(".", "x")


def test_given_a_file_as_parent_when_written_beneath_then_refused(ws):
    with pytest.raises(WorkspaceError, match="^'src/app.py' is not a directory$"):
        ws.write_text("src/app.py/inner.txt", "x")


# -- exists / is_dir ----------------------------------------------------------------------


def test_given_files_and_implicit_directories_when_probed_then_exists_and_is_dir_agree(s3, ws):
    put(s3, "tenant/session-1/marker/", b"")  # a console-style directory marker
    cases = {
        ".": (True, True), "/": (True, True), "notes.txt": (True, False), "src": (True, True),
        "src/": (True, True), "src/pkg": (True, True), "src/pkg/deep.py": (True, False),
        "marker": (True, True), "missing": (False, False), "src/ap": (False, False), "sr": (False, False),
    }
    for path, (exists, is_dir) in cases.items():
        assert (ws.exists(path), ws.is_dir(path)) == (exists, is_dir), path


def test_given_an_empty_prefix_when_probed_then_the_root_exists_and_is_empty(s3):
    empty = S3Workspace(s3, BUCKET, "nobody/here")
    assert empty.exists(".") and empty.is_dir(".")
    assert empty.list_dir(".") == []
    assert empty.glob("**/*") == []


# -- list_dir -----------------------------------------------------------------------------


def test_given_a_directory_when_listed_then_sorted_entries_with_directories_slashed(ws):
    assert ws.list_dir(".") == [".hidden/", "b.txt", "docs/", "notes.txt", "src/"]
    assert ws.list_dir("src") == ["app.py", "pkg/", "util.py"]
    assert ws.list_dir("/src/pkg/") == ["data.json", "deep.py"]


def test_given_the_same_tree_when_listed_then_it_matches_the_local_workspace(ws, tmp_path):
    local = _local_copy(tmp_path)
    for path in (".", "src", "src/pkg", "docs", ".hidden"):
        assert ws.list_dir(path) == local.list_dir(path), path


def test_given_a_directory_marker_when_listed_then_the_marker_itself_is_not_an_entry(s3, ws):
    put(s3, "tenant/session-1/src/", b"")
    put(s3, "tenant/session-1/empty/", b"")
    assert ws.list_dir("src") == ["app.py", "pkg/", "util.py"]
    assert ws.list_dir("empty") == []
    assert "empty/" in ws.list_dir(".")


def test_given_a_missing_directory_when_listed_then_directory_not_found(ws):
    with pytest.raises(WorkspaceError, match="^directory not found: 'nope'$"):
        ws.list_dir("nope")


def test_given_a_file_when_listed_then_not_a_directory(ws):
    with pytest.raises(WorkspaceError, match="^'notes.txt' is not a directory$"):
        ws.list_dir("notes.txt")


def test_given_a_small_page_size_when_listing_then_every_page_is_read(s3):
    for i in range(7):
        put(s3, f"paged/f{i}.txt", "x")
    for i in range(5):
        put(s3, f"paged/d{i}/inner.txt", "x")
    ws = S3Workspace(s3, BUCKET, "paged", page_size=2)
    calls = count_list_calls(s3)
    assert ws.list_dir(".") == [f"d{i}/" for i in range(5)] + [f"f{i}.txt" for i in range(7)]
    assert len(calls) == 6  # 12 entries, 2 a page
    calls.clear()
    assert ws.glob("**/*.txt") == sorted([f"d{i}/inner.txt" for i in range(5)] + [f"f{i}.txt" for i in range(7)])
    assert len(calls) == 6


def test_given_more_than_1000_keys_when_listed_and_globbed_then_all_are_returned(s3):
    keys = [f"big/dir/f{i:04}.txt" for i in range(1005)]
    for key in keys:
        put(s3, key, "x")
    ws = S3Workspace(s3, BUCKET, "big")
    calls = count_list_calls(s3)
    assert len(ws.list_dir("dir")) == 1005
    assert len(calls) == 2
    assert ws.glob("**/*.txt") == [k[len("big/"):] for k in keys]


# -- glob ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("*.txt", ["b.txt", "notes.txt"]),
        ("**/*.py", [".hidden/x.py", "src/app.py", "src/pkg/deep.py", "src/util.py"]),
        ("src/**/*.py", ["src/app.py", "src/pkg/deep.py", "src/util.py"]),
        ("src/*", ["src/app.py", "src/util.py"]),
        ("src/*/*", ["src/pkg/data.json", "src/pkg/deep.py"]),
        ("**/pkg/*.json", ["src/pkg/data.json"]),
        ("**/*", sorted(FILES)),
        ("src/**", ["src/app.py", "src/pkg/data.json", "src/pkg/deep.py", "src/util.py"]),  # as pathlib 3.13
        ("src/**/**/pkg/*.py", ["src/pkg/deep.py"]),
        ("src/app.py", ["src/app.py"]),
        ("./src/../notes.txt", ["notes.txt"]),
        ("?.txt", ["b.txt"]),
        ("[bn]*.txt", ["b.txt", "notes.txt"]),
        ("[!b]*.txt", ["notes.txt"]),
        ("src/[a-m]*.py", ["src/app.py"]),
        ("*.rs", []),
        ("src", []),  # a directory, not a file
        ("src/", []),
        ("../*", []),
    ],
)
def test_given_a_pattern_when_globbed_then_sorted_relative_file_paths(ws, pattern, expected):
    assert ws.glob(pattern) == expected


def test_given_the_same_tree_when_globbed_then_it_matches_the_local_workspace(ws, tmp_path):
    local = _local_copy(tmp_path)
    patterns = ["*", "*.txt", "**/*", "**/*.py", "src/**/*", "src/**/*.py", "src/*", "*/*", "*/*/*",
                "**/pkg/*", "**/src/**/*.json", "s*/**/d*", "?.txt", "[a-c]*", "[!a-c]*", "src/app.py",
                "nope/**/*", "src/../*.txt", "**/*.[jp][sy]*"]
    for pattern in patterns:
        assert ws.glob(pattern) == local.glob(pattern), pattern


def test_given_an_absolute_or_empty_pattern_when_globbed_then_refused(ws):
    for pattern in ("/etc/*", ""):
        with pytest.raises(WorkspaceError, match="glob pattern must be relative to the workspace"):
            ws.glob(pattern)


def test_given_directory_markers_when_globbed_then_only_files_match(s3, ws):
    put(s3, "tenant/session-1/empty/", b"")
    assert ws.glob("**/*") == sorted(FILES)


def test_given_a_literal_leading_directory_when_globbed_then_only_that_prefix_is_listed(s3, ws):
    seen: list[str] = []
    s3.meta.events.register("provide-client-params.s3.ListObjectsV2", lambda params, **_: seen.append(params["Prefix"]))
    ws.glob("src/pkg/*.py")
    assert seen == ["tenant/session-1/src/pkg/"]


def test_given_glob_metacharacters_in_names_when_escaped_then_matched_literally(s3):
    import glob as globlib

    put(s3, "meta/we[ir]d/a*.txt", "x")
    put(s3, "meta/weid/b.txt", "x")
    ws = S3Workspace(s3, BUCKET, "meta")
    assert ws.glob(f"{globlib.escape('we[ir]d')}/**/*") == ["we[ir]d/a*.txt"]
    assert ws.glob("we[ir]d/*") == ["weid/b.txt"]  # unescaped, [ir] is a class: "weid", not "we[ir]d"


# -- isolation ----------------------------------------------------------------------------


def test_given_two_workspaces_on_neighbouring_prefixes_then_neither_sees_the_others_files(s3):
    one = S3Workspace(s3, BUCKET, "tenant/s1")
    other = S3Workspace(s3, BUCKET, "tenant/s10")  # "tenant/s1" is a string prefix of it
    one.write_text("mine.txt", "one")
    other.write_text("theirs.txt", "other")
    other.write_text("src/x.py", "x = 1")
    assert one.list_dir(".") == ["mine.txt"]
    assert other.list_dir(".") == ["src/", "theirs.txt"]
    assert one.glob("**/*") == ["mine.txt"]
    assert not one.exists("theirs.txt") and not one.is_dir("src")
    with pytest.raises(WorkspaceError, match="file not found"):
        one.read_text("theirs.txt")
    assert run_tool("grep", {"pattern": "."}, one)["output"] == "mine.txt:1:one"
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        one.read_text("../s10/theirs.txt")


# -- the built-in tools on an S3 workspace ------------------------------------------------


def test_given_a_file_when_read_tool_runs_then_numbered_lines(ws):
    out = run_tool("read", {"file_path": "src/app.py"}, ws)["output"]
    assert out.splitlines()[0] == "     1\timport os"
    assert out.splitlines()[3] == "     4\t    return 42"


def test_given_offset_and_limit_when_read_tool_runs_then_a_window_and_a_continuation_hint(ws):
    out = run_tool("read", {"file_path": "notes.txt", "offset": 2, "limit": 1}, ws)["output"]
    assert out == "     2\tbeta\n[1 more lines; continue with offset=3]"


def test_given_a_missing_file_when_read_tool_runs_then_tool_error(ws):
    with pytest.raises(ToolError, match="file not found: 'missing.txt'"):
        run_tool("read", {"file_path": "missing.txt"}, ws)


def test_given_content_when_write_tool_runs_then_the_object_exists(s3, ws):
    result = run_tool("write", {"file_path": "out/new.txt", "content": "héllo"}, ws)
    assert result == {"output": "wrote 6 bytes to out/new.txt"}
    body = s3.get_object(Bucket=BUCKET, Key="tenant/session-1/out/new.txt")["Body"].read()
    assert body.decode("utf-8") == "héllo"


def test_given_a_unique_string_when_edit_tool_runs_then_replaced_in_the_object(ws):
    result = run_tool("edit", {"file_path": "src/app.py", "old_string": "return 42", "new_string": "return 43"}, ws)
    assert result == {"output": "edited src/app.py: replaced 1 occurrence"}
    assert ws.read_text("src/app.py").endswith("    return 43\n")


def test_given_a_repeated_string_when_edit_tool_runs_then_tool_error(ws):
    ws.write_text("dup.txt", "x x")
    with pytest.raises(ToolError, match="old_string occurs 2 times in 'dup.txt'"):
        run_tool("edit", {"file_path": "dup.txt", "old_string": "x", "new_string": "y"}, ws)


def test_given_directories_when_ls_tool_runs_then_entries(ws):
    assert run_tool("ls", {}, ws)["output"] == ".hidden/\nb.txt\ndocs/\nnotes.txt\nsrc/"
    assert run_tool("ls", {"path": "src/pkg"}, ws)["output"] == "data.json\ndeep.py"
    with pytest.raises(ToolError, match="directory not found: 'nope'"):
        run_tool("ls", {"path": "nope"}, ws)


def test_given_an_empty_directory_marker_when_ls_tool_runs_then_empty_directory(s3, ws):
    put(s3, "tenant/session-1/empty/", b"")
    assert run_tool("ls", {"path": "empty"}, ws)["output"] == "(empty directory)"


def test_given_a_recursive_pattern_when_glob_tool_runs_then_matching_paths(ws):
    assert run_tool("glob", {"pattern": "src/**/*.py"}, ws)["output"] == "src/app.py\nsrc/pkg/deep.py\nsrc/util.py"
    assert run_tool("glob", {"pattern": "**/*.rs"}, ws)["output"] == "no files match '**/*.rs'"


def test_given_a_regex_when_grep_tool_runs_then_path_lineno_line_across_the_workspace(s3, ws):
    put(s3, "tenant/session-1/src/blob.bin", b"\xffbeta\x00")  # not UTF-8: skipped
    out = run_tool("grep", {"pattern": "(?i)beta"}, ws)["output"]
    assert out.splitlines() == [
        "notes.txt:2:beta",
        "src/pkg/data.json:1:{\"beta\": true}",
        "src/pkg/deep.py:2:BETA = 'beta'",
        "src/util.py:2:    return 'beta'",
    ]


def test_given_a_path_when_grep_tool_runs_then_only_that_directory_or_file(ws):
    assert run_tool("grep", {"pattern": "beta", "path": "src/pkg"}, ws)["output"].splitlines() == [
        "src/pkg/data.json:1:{\"beta\": true}",
        "src/pkg/deep.py:2:BETA = 'beta'",
    ]
    assert run_tool("grep", {"pattern": "beta", "path": "/notes.txt"}, ws)["output"] == "notes.txt:2:beta"
    assert run_tool("grep", {"pattern": "zzz"}, ws)["output"] == "no matches"
    with pytest.raises(ToolError, match="path not found: 'nope'"):
        run_tool("grep", {"pattern": "x", "path": "nope"}, ws)


def test_given_an_s3_workspace_when_bash_tool_runs_then_refused_with_a_clear_tool_error(ws):
    with pytest.raises(ToolError, match="bash needs a local directory or an external execute lane"):
        run_tool("bash", {"command": "echo hi"}, ws)


@pytest.mark.parametrize("path", ["../../etc/passwd", "a/../../b"])
@pytest.mark.parametrize(
    "tool, args",
    [("read", {}), ("write", {"content": "x"}), ("edit", {"old_string": "a", "new_string": "b"})],
)
def test_given_a_path_outside_the_workspace_when_a_file_tool_runs_then_refused(ws, tool, args, path):
    with pytest.raises(ToolError, match=f"path '{path}' is outside the workspace".replace(".", r"\.")):
        run_tool(tool, {"file_path": path, **args}, ws)


@pytest.mark.parametrize("tool", ["ls", "grep"])
def test_given_a_path_outside_the_workspace_when_ls_or_grep_runs_then_refused(ws, tool):
    args = {"path": "../../etc/passwd"} | ({"pattern": "root"} if tool == "grep" else {})
    with pytest.raises(ToolError, match="is outside the workspace"):
        run_tool(tool, args, ws)


def _local_copy(tmp_path: Path) -> LocalWorkspace:
    root = tmp_path / "local"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return LocalWorkspace(root)


def test_given_an_s3_workspace_when_a_worker_runs_bash_then_it_works_on_a_copy_and_writes_back_the_changes(s3):
    from a3s_core.tools.lane_work import execute_task

    ws = S3Workspace(s3, BUCKET, "tenant/worker")
    ws.write_text("keep.txt", "kept")
    ws.write_text("gone.txt", "bye")
    ws.write_text("src/app.py", "print(1)\n")
    outcome = execute_task({"command_type": "bash", "payload": {
        "command": "python3 src/app.py > out.txt && rm gone.txt && echo more >> keep.txt && echo ran"}}, ws)
    assert outcome == {"success": True, "result": {"output": "ran\n", "exit_code": 0}}
    assert ws.read_text("out.txt") == "1\n"
    assert ws.read_text("keep.txt") == "keptmore\n"
    assert not ws.exists("gone.txt")
    assert ws.read_text("src/app.py") == "print(1)\n"
