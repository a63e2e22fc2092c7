"""`make demo`: the seed examples, end to end on the embedded local stack (no AWS, no network)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUN = [
    ("lane-queue", "lane_queue.py", "route the execute lane outside, drain its tasks by hand"),
    ("external-tasks", "external_tasks.py", "complete a queued task with structured evidence"),
    ("external-tasks-handler", "external_tasks_handler.py", "a background handler drains tasks; four sessions in parallel"),
]


def main() -> int:
    failed = []
    for name, script, what in RUN + [(n, s, w) for n, s, w in EXTRA if (EXAMPLES / s).exists()]:
        print(f"\n=== {name}: {what} ({script})", flush=True)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, script], cwd=EXAMPLES, timeout=300)
        print(f"--- {name}: {'ok' if proc.returncode == 0 else 'FAILED'} in {time.monotonic() - start:.1f} s")
        if proc.returncode != 0:
            failed.append(name)
    print(f"\n{len(RUN) + len(EXTRA) - len(failed)} examples ran, {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


# Examples of later capabilities join the demo as they land.
EXTRA: list[tuple[str, str, str]] = [
    ("orchestration", "orchestration.py", "parallel fan-out, a two-stage pipeline, a resumable journaled run"),
    ("subagents", "subagents.py", "task, parallel_task, run_team, and the orchestrator's run control"),
]

if __name__ == "__main__":
    raise SystemExit(main())
