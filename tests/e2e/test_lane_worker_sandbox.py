"""The kit's own lane worker (EnableLaneWorker=true), on a stack of its own in a second process:
it asks before running a non-permissive session's tool, and runs code in the sandbox."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(r"""
    import json
    from a3s_serverless import Agent

    agent = Agent.local(parameters={"EnableLaneWorker": "true", "DriverTimeout": "4",
                                    "RunsVisibilityTimeout": "5", "LaneVisibilityTimeout": "4"}, tenant="acme")
    out = {}
    cmd = 'go\n/tool bash {"command": "echo leaks=$(env | grep -cE \'AWS_|OPENAI|A3S_|should-not\') vars=$(env | wc -l)"}'
    strict = agent.session("strict")
    strict.set_lane_handler("execute", "external", 60000)
    handle = strict.send_async(cmd)
    events = handle.events()
    out["first_pending"] = next(e for e in events if e["type"] == "external_task_pending")["command_type"]
    [confirm] = strict.pending_external_tasks()
    strict.complete_external_task(confirm["task_id"], success=True, result={"approved": True})
    out["strict_text"] = handle.wait(timeout=60).text
    loose = agent.session("loose", permissive=True)
    loose.set_lane_handler("execute", "external", 60000)
    handle = loose.send_async(cmd)
    out["loose_text"] = handle.wait(timeout=60).text
    out["loose_pending"] = [e["command_type"] for e in handle.events() if e["type"] == "external_task_pending"]
    print(json.dumps(out))
""")


def test_given_the_kits_lane_worker_when_a_session_is_not_permissive_then_it_asks_first_and_runs_in_the_sandbox() -> None:
    env = {**os.environ, "OPENAI_API_KEY": "sk-should-not-leak"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first_pending"] == "confirm"  # asked before the worker could see the task
    for text in (out["strict_text"], out["loose_text"]):
        assert "bash -> leaks=0 vars=" in text  # the worker's credentials and settings stay out
    assert out["loose_pending"] == ["bash"]  # a permissive session's task goes straight to the worker
