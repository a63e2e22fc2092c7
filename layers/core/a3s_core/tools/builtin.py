"""Built-in tools (names and arguments as in A3S Code): read, write, edit, ls, glob, grep, bash.

A tool result is ``{"output": str}`` or ``{"output": str, "exit_code": int}``; anything the
model should see as a tool error is raised as ToolError.
"""
from __future__ import annotations

import glob as globlib
import re
from collections.abc import Callable

from a3s_core.tools import isolation
from a3s_core.workspace.base import Workspace, WorkspaceError

READ_LIMIT = 2000
GREP_MAX_MATCHES = 500
GREP_LINE_CHARS = 1000
BASH_DEFAULT_TIMEOUT_MS = 120_000
BASH_MAX_TIMEOUT_MS = 600_000
BASH_OUTPUT_CHARS = isolation.OUTPUT_CHARS


class ToolError(Exception):
    """The tool failed; the model sees str(e) as a tool error."""


def _schema(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {
        "name": name,
        "description": description,
        "input_schema": {"type": "object", "properties": properties, "required": required},
    }


_STR = {"type": "string"}
TOOL_SCHEMAS: dict[str, dict] = {
    s["name"]: s
    for s in [
        _schema(
            "read",
            "Read a text file; lines are numbered like `cat -n`. offset is the 1-based first line, "
            f"limit the number of lines (default {READ_LIMIT}).",
            {
                "file_path": _STR,
                "offset": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1},
            },
            ["file_path"],
        ),
        _schema(
            "write",
            "Create or overwrite a file with content, creating parent directories.",
            {"file_path": _STR, "content": _STR},
            ["file_path", "content"],
        ),
        _schema(
            "edit",
            "Replace old_string by new_string in a file; old_string must occur exactly once.",
            {"file_path": _STR, "old_string": {"type": "string", "minLength": 1}, "new_string": _STR},
            ["file_path", "old_string", "new_string"],
        ),
        _schema(
            "ls",
            "List a directory (default: the workspace root); directories end with '/'.",
            {"path": _STR},
            [],
        ),
        _schema(
            "glob",
            "Find files by glob pattern relative to the workspace ('**' matches any depth).",
            {"pattern": {"type": "string", "minLength": 1}},
            ["pattern"],
        ),
        _schema(
            "grep",
            f"Search text files for a regular expression; prints path:lineno:line, at most {GREP_MAX_MATCHES} matches.",
            {"pattern": {"type": "string", "minLength": 1}, "path": _STR},
            ["pattern"],
        ),
        _schema(
            "bash",
            "Run a shell command in the workspace directory; returns combined stdout and stderr "
            f"and the exit code. timeout_ms defaults to {BASH_DEFAULT_TIMEOUT_MS} (at most {BASH_MAX_TIMEOUT_MS}).",
            {"command": {"type": "string", "minLength": 1}, "timeout_ms": {"type": "integer", "minimum": 1}},
            ["command"],
        ),
    ]
}


def run_tool(name: str, arguments: dict, workspace: Workspace) -> dict:
    run = _TOOLS.get(name)
    if run is None:
        raise ToolError(f"unknown tool {name!r}")
    import jsonschema  # when a tool runs, not when the schemas are read (every function that drives a run)

    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(TOOL_SCHEMAS[name]["input_schema"]).iter_errors(arguments)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise ToolError(f"invalid arguments for {name}: {f'{where}: ' if where else ''}{error.message}")
    try:
        return run(arguments, workspace)
    except ToolError:
        raise
    except WorkspaceError as e:
        raise ToolError(str(e)) from None
    except OSError as e:
        raise ToolError(f"{name} failed: {e.strerror or e}") from None
    except Exception as e:  # anything else is still the tool's failure, for the model to see
        raise ToolError(f"{name} failed: {type(e).__name__}: {e}") from None


def _read(args: dict, ws: Workspace) -> dict:
    path = args["file_path"]
    lines = ws.read_text(path).splitlines()
    offset, limit = args.get("offset", 1), args.get("limit", READ_LIMIT)
    if not lines:
        return {"output": "(empty file)"}
    if offset > len(lines):
        raise ToolError(f"offset {offset} is past the end of '{path}' ({len(lines)} lines)")
    shown = lines[offset - 1 : offset - 1 + limit]
    out = "\n".join(f"{n:6}\t{line}" for n, line in enumerate(shown, start=offset))
    rest = len(lines) - (offset - 1 + len(shown))
    if rest > 0:
        out += f"\n[{rest} more lines; continue with offset={offset + len(shown)}]"
    return {"output": out}


def _write(args: dict, ws: Workspace) -> dict:
    ws.write_text(args["file_path"], args["content"])
    return {"output": f"wrote {len(args['content'].encode('utf-8'))} bytes to {args['file_path']}"}


def _edit(args: dict, ws: Workspace) -> dict:
    path, old = args["file_path"], args["old_string"]
    text = ws.read_text(path)
    count = text.count(old)
    if count != 1:
        where = "was not found" if count == 0 else f"occurs {count} times"
        raise ToolError(f"old_string {where} in '{path}'; it must occur exactly once")
    ws.write_text(path, text.replace(old, args["new_string"], 1))
    return {"output": f"edited {path}: replaced 1 occurrence"}


def _ls(args: dict, ws: Workspace) -> dict:
    entries = ws.list_dir(args.get("path") or ".")
    return {"output": "\n".join(entries) if entries else "(empty directory)"}


def _glob(args: dict, ws: Workspace) -> dict:
    matches = ws.glob(args["pattern"])
    return {"output": "\n".join(matches) if matches else f"no files match {args['pattern']!r}"}


def _grep(args: dict, ws: Workspace) -> dict:
    try:
        regex = re.compile(args["pattern"])
    except re.error as e:
        raise ToolError(f"invalid regular expression {args['pattern']!r}: {e}") from None
    path = args.get("path") or "."
    rel = ws.relative(path)
    if ws.is_dir(rel):
        files = ws.glob("**/*" if rel == "." else f"{globlib.escape(rel)}/**/*")
    elif ws.exists(rel):
        files = [rel]
    else:
        raise ToolError(f"path not found: '{path}'")
    found: list[str] = []
    for file in files:
        try:
            text = ws.read_text(file)
        except WorkspaceError:  # not UTF-8: binary
            continue
        if "\x00" in text:
            continue
        for lineno, line in enumerate(text.splitlines(), start=1):
            if regex.search(line):
                found.append(f"{file}:{lineno}:{line[:GREP_LINE_CHARS]}")
                if len(found) == GREP_MAX_MATCHES:
                    found.append(f"[match limit {GREP_MAX_MATCHES} reached]")
                    return {"output": "\n".join(found)}
    return {"output": "\n".join(found) if found else "no matches"}


def _bash(args: dict, ws: Workspace) -> dict:
    root = ws.root_dir()
    if root is None:
        raise ToolError("bash needs a local directory or an external execute lane")
    timeout_ms = min(args.get("timeout_ms", BASH_DEFAULT_TIMEOUT_MS), BASH_MAX_TIMEOUT_MS)
    done = isolation.run(args["command"], root, timeout_ms)
    output = done["output"] + (f"\n[truncated {done['dropped']} bytes]" if done["dropped"] else "")
    if done["timed_out"]:
        raise ToolError(f"command timed out after {timeout_ms} ms" + (f"; output so far:\n{output}" if output else ""))
    return {"output": output, "exit_code": done["exit_code"]}


_TOOLS: dict[str, Callable[[dict, Workspace], dict]] = {
    "read": _read,
    "write": _write,
    "edit": _edit,
    "ls": _ls,
    "glob": _glob,
    "grep": _grep,
    "bash": _bash,
}
