"""Run a tenant's command so that it can take nothing with it and leave nothing behind.

Every `bash` the kit runs goes through here, wherever it runs (the sandbox function, the embedded
stack, an `a3s-worker`): a child Python process (`python -m a3s_core.tools.isolation`) with a scrubbed
environment becomes a child subreaper, runs the command in its own process group with a fresh
HOME and TMPDIR, reads its output under a cap as it arrives, and when the command ends or times
out kills every process left below it (`setsid` and double forks included: orphans are
re-parented to the subreaper, not to init), then removes its temporary directory.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUTPUT_CHARS = 30_000   # what the model sees; the rest is counted and dropped as it is read
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_DUMPABLE = 4
_EXIT_GRACE_S = 10      # the child's own bookkeeping beyond the command's timeout


def scrubbed_env(home: str) -> dict[str, str]:
    """No AWS credentials, no model keys, no kit settings: only what a shell needs."""
    return {"PATH": SAFE_PATH, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "SHELL": "/bin/sh", "USER": "sandbox"}


def run(command: str, cwd: str | Path, timeout_ms: int) -> dict[str, Any]:
    """Run `command` isolated: {"output", "exit_code", "timed_out", "dropped"} (output capped)."""
    request = json.dumps({"command": command, "cwd": str(cwd), "timeout_ms": timeout_ms}).encode()
    # The runner is this file, run by path in isolated mode (-I: no PYTHON* variables, no script or
    # working directory on sys.path) from a neutral directory: nothing in the workspace can stand
    # in for it. It needs the standard library only.
    env = {**scrubbed_env(tempfile.gettempdir()), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(Path(__file__).resolve())], cwd=tempfile.gettempdir(),
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(request, timeout=timeout_ms / 1000 + _EXIT_GRACE_S)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        return {"output": "", "exit_code": -9, "timed_out": True, "dropped": 0}
    try:
        return json.loads(out)
    except ValueError:
        raise RuntimeError(f"the isolated runner failed: {err.decode(errors='replace')[-2000:]}") from None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    """Every live process below `root`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def become_reaper() -> None:
    """Make this process a child subreaper: whatever its descendants orphan comes back to it (a
    command that kills its own runner included), for reap_all() to end. Only for a process that
    has no other children of its own, such as the sandbox function's."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def not_dumpable() -> None:
    """Commands run as the same user cannot read this process's /proc/<pid>/environ or attach to it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def reap_all() -> None:
    """Kill and reap everything below this process until nothing is left."""
    for _ in range(50):
        pids = _descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    time.sleep(0.005)
            except ChildProcessError:
                break


def _execute(command: str, cwd: str, timeout_ms: int, home: str) -> dict[str, Any]:
    proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=scrubbed_env(home),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout is not None
    kept, dropped, timed_out = bytearray(), 0, False

    def take(chunk: bytes) -> None:
        nonlocal dropped
        room = max(OUTPUT_CHARS * 4 - len(kept), 0)  # bytes: a character is at most 4
        kept.extend(chunk[:room])
        dropped += max(0, len(chunk) - room)

    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_ms / 1000
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if sel.select(timeout=min(left, 0.05)):
                chunk = os.read(fd, 65536)
                if not chunk:  # every writer closed the pipe
                    break
                take(chunk)
            elif proc.poll() is not None:
                # The shell is done; a background child may still hold the pipe: take what is
                # already written, then end the child below.
                os.set_blocking(fd, False)
                try:
                    while chunk := os.read(fd, 65536):
                        take(chunk)
                except BlockingIOError:
                    pass
                break
    if not timed_out:  # the output ended; the shell may still be working
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    _kill_group(proc.pid)
    code = proc.wait()
    proc.stdout.close()
    text = kept.decode("utf-8", errors="replace")
    if len(text) > OUTPUT_CHARS:
        dropped += len(text[OUTPUT_CHARS:].encode())
        text = text[:OUTPUT_CHARS]
    return {"output": text, "exit_code": code, "timed_out": timed_out, "dropped": dropped}


def main() -> int:
    request = json.loads(sys.stdin.buffer.read())
    become_reaper()  # orphans (setsid, double forks) come back to us instead of init, so we can end them
    not_dumpable()
    home = tempfile.mkdtemp(prefix="a3s-tool-")
    try:
        result = _execute(request["command"], request["cwd"], int(request["timeout_ms"]), home)
    finally:
        reap_all()
        shutil.rmtree(home, ignore_errors=True)
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
