# Seed: A3S Code "External Tasks" (Python). Only the import line is changed; the lines marked
# "added:" send a prompt so that a real task is waiting when the seed drains the queue.
import os
from a3s_serverless import Agent

agent = Agent.create(open("agent.acl").read())
session = agent.session(os.getcwd())

# Route a lane to an external worker so its tools are queued, not executed.
session.set_lane_handler("execute", "external", 300000)

# added: the agent calls `bash`, which lands on the execute lane as an external task.
run = session.send_async('Run the build.\n/tool bash {"command": "npm run build"}')
next(e for e in run.events() if e["type"] == "external_task_pending")  # added

# Drain the tasks waiting for the host to fulfill.
pending = session.pending_external_tasks()

for task in pending:
    print(f"pending: {task['task_id']} on {task['lane']} ({task['command_type']})")

    try:
        # ...the host does the real work here (run CI, call a service, ask a human)...
        ok = session.complete_external_task(
            task["task_id"],
            success=True,
            result={
                "summary": "worker completed the test run",
                "command": "npm run build",
                "exit_code": 0,
            },
        )
        print("completed:", ok)
    except Exception as err:
        session.complete_external_task(
            task["task_id"],
            success=False,
            error=str(err),
        )

# added: the result has no string `output`, so the model sees it as compact JSON.
print("agent:", run.wait().text)
session.close()
