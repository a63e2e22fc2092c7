# Seed: A3S Code "External Tasks" handler and parallel processing (Python). Only the import
# line is changed; the lines marked "added:" create the agent the seed assumes, route the
# execute lane outside, and send a prompt so the handler has work.
from a3s_serverless import SessionQueueConfig
from a3s_serverless import Agent  # added: the seed's snippet assumes an `agent`

agent = Agent.create(open("agent.acl").read())  # added

queue_config = SessionQueueConfig()
queue_config.enable_all_features = True

session = agent.session("/my-project",
    permissive=True,
    queue_config=queue_config,
)

# Register external task handler
def handle_task(task):
    print(f"Worker received task: {task['id']}")
    return {"success": True, "result": {"output": "task completed"}}

session.set_external_task_handler(handle_task)

session.set_lane_handler("execute", "external", 60000)  # added
result = session.send('Run the tests.\n/tool bash {"command": "make test"}')  # added
print("agent:", result.text)  # added
session.close()  # added

# Parallel Processing
from concurrent.futures import ThreadPoolExecutor

files = ["auth.rs", "db.rs", "handler.rs", "config.rs"]

def review_file(file):
    session = agent.session("/my-project", permissive=True)
    return session.send(f"Review {file} for issues")

with ThreadPoolExecutor() as executor:
    results = list(executor.map(review_file, files))
for r in results:
    print(r.text)
