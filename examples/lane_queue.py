# Seed: A3S Code "Lane Queue" (Python). Only the import line is changed; the lines marked
# "added:" send a prompt whose tools land on the execute lane, so the drain finds real tasks.
from a3s_serverless import Agent, SessionOptions

agent = Agent.create(open("agent.acl").read())
opts = SessionOptions()
opts.builtin_skills = True
session = agent.session(".", opts)

# Route the "execute" lane to an external worker.
# Tools on this lane are NOT run by the agent; they are queued for
# an outside worker to pick up and complete.
session.set_lane_handler("execute", "external", 300000)

# has_queue() is False until at least one external/hybrid lane is registered.
print("queue active:", session.has_queue())

# added: two execute-lane tools and one query-lane tool (query stays internal).
run = session.send_async(
    "Prepare a release.\n"
    '/tool write {"file_path": "VERSION", "content": "1.0.0"}\n'
    '/tool bash {"command": "git tag v1.0.0"}\n'
    '/tool ls {}'
)
next(e for e in run.events() if e["type"] == "external_task_pending")  # added
print("stats:", session.queue_stats()["lanes"]["execute"])  # added

# Drain whatever is waiting for an external worker.
pending = session.pending_external_tasks()
for task in pending:
    print("pending:", task["task_id"], task["lane"], task["command_type"])

    # ... hand off to your worker, run it, then report the outcome back:
    session.complete_external_task(
        task["task_id"],
        success=True,
        result={"note": "done by external worker"},
    )

print("lane queue drained")
print("agent:", run.wait().text)  # added
