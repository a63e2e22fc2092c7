# Seed: A3S Code "Subagents" (Python). Only the import line is changed; the lines marked
# "added:" make the offline scripted model really delegate (a real model decides by itself),
# and drive the orchestrator the seed shows in Rust.
import json

from a3s_serverless import Agent

agent = Agent.create("agent.hcl")
session = agent.session(".")

result = session.send(
    "Use the task tool to write unit tests for the auth module"
)
print(result.text)

# added: the scripted model calls whatever /tool lines say, here the three delegation tools.
session = agent.session(".", permissive=True)  # added
task = {"agent": "general", "prompt": "Write unit tests for src/auth.rs covering all edge cases"}  # added
print(session.send("Delegate it.\n/tool task " + json.dumps(task)).text)  # added
audits = {"tasks": [  # added
    {"agent": "general", "prompt": "Audit src/auth.rs for security issues"},
    {"agent": "general", "prompt": "Audit src/db.rs for SQL injection risks"},
    {"agent": "general", "prompt": "Audit src/api.rs for input validation gaps"},
]}
print(session.send("Fan out.\n/tool parallel_task " + json.dumps(audits)).text)  # added
# added: offline, the reviewer's smallest valid verdict is {"approved": false}, so every round is
# rejected and run_team stops at max_rounds; a real model reviews the work (see tests/e2e/test_subagents.py).
team = {"goal": "Audit the authentication module for security issues", "lead_agent": "general",  # added
        "worker_agent": "general", "reviewer_agent": "general", "max_steps": 10, "max_rounds": 2}
print(session.send("Team up.\n/tool run_team " + json.dumps(team)).text)  # added

# added: the orchestrator (the seed shows it in Rust): pause, inject, resume, cancel.
orchestrator = agent.orchestrator()  # added
run = session.send_async("A long job.\n/tool task " + json.dumps({"agent": "general", "prompt": "slow\n/sleep 500"}))  # added
orchestrator.pause_agent(run.run_id)  # added
orchestrator.inject_prompt(run.run_id, "Stop and summarize what you've done so far")  # added
orchestrator.resume_agent(run.run_id)  # added
print(run.wait().text)  # added
print([(r["run_id"], r["agent"] or "top-level", r["status"]) for r in orchestrator.list(session.session_id)][-3:])  # added
