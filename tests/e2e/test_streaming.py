"""Every run keeps an ordered event history that stream() and RunHandle.events() follow."""
from __future__ import annotations


def test_given_a_tool_turn_when_streamed_then_events_come_in_order_with_increasing_seq(agent, workspace):
    session = agent.session(str(workspace), permissive=True)
    events = list(session.stream('look\n/tool ls {}\n/tool write {"file_path": "n.txt", "content": "1"}'))
    types = [e["type"] for e in events]
    assert types == ["run_start", "turn_start", "tool_start", "tool_end", "tool_start", "tool_end", "turn_end",
                     "turn_start", "text", "turn_end", "run_end"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["tool"] for e in events if e["type"] == "tool_end"] == ["ls", "write"]  # query lane before execute
    assert events[-1]["status"] == "succeeded" and events[-1]["text"].startswith("echo: look")


def test_given_an_external_task_when_streamed_then_pending_and_completed_events_frame_it(agent, workspace):
    session = agent.session(str(workspace))
    session.set_lane_handler("execute", "external", 30000)
    handle = session.send_async('go\n/tool bash {"command": "true"}')
    seen = []
    for event in handle.events():
        seen.append(event["type"])
        if event["type"] == "external_task_pending":
            assert handle.status() == "waiting"
            session.complete_external_task(event["task_id"], success=True, result={"output": "fine"})
    assert seen.index("external_task_pending") < seen.index("external_task_completed") < seen.index("run_end")
    assert handle.wait().text == "echo: go\nbash -> fine"


def test_given_events_after_n_then_only_later_events_are_returned(agent, workspace):
    session = agent.session(str(workspace))
    handle = session.send_async("hi")
    all_events = list(handle.events())
    later = list(handle.events(after=2))
    assert later == all_events[2:]
