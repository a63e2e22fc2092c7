"""What one tenant's key can reach, tried as an attacker would: commands see no secrets, workspaces
are per tenant, approvals cannot be bypassed."""
from __future__ import annotations

import secrets

import pytest

from a3s_serverless import Agent
from a3s_serverless.errors import RequestError


@pytest.fixture
def tenants(stack):
    """Two fresh tenants of the shared embedded stack, as Agent.local(tenant=...) gives them."""
    tag = secrets.token_hex(3)
    return Agent.local(tenant=f"alpha-{tag}"), Agent.local(tenant=f"beta-{tag}")


# -- 1. tools that run code see nothing secret and leave nothing behind -------------------------
def test_given_secrets_in_the_stacks_environment_when_a_tenants_bash_prints_env_then_none_is_there(
        monkeypatch, tenants):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    alpha, _ = tenants
    session = alpha.session("proj", permissive=True)
    text = session.send('look\n/tool bash {"command": "env | tr \\"\\\\n\\" \\" \\"; echo done"}').text
    assert "PATH=/usr/local/bin:/usr/bin:/bin" in text
    for leak in ("sk-should-not-leak", "AWS_", "OPENAI", "A3S_", "testing"):
        assert leak not in text


# -- 1. workspaces are per tenant ----------------------------------------------------------------
def test_given_two_tenants_with_the_same_workspace_name_when_one_writes_a_secret_then_the_other_cannot_read_it(
        tenants):
    alpha, beta = tenants
    a = alpha.session("proj", permissive=True)
    a.send('save\n/tool write {"file_path": "secrets.env", "content": "TOKEN=alpha"}')
    b = beta.session("proj", permissive=True)
    for steal in ('/tool read {"file_path": "secrets.env"}', '/tool grep {"pattern": "TOKEN"}',
                  '/tool glob {"pattern": "../../*/proj/*"}'):
        text = b.send("steal\n" + steal).text
        assert "TOKEN=alpha" not in text
    # The same name is another directory: beta's own bash finds nothing there either. (Commands on
    # the embedded stack are not confined to their workspace; on AWS they run in the sandbox,
    # which holds nothing but the tenant's own workspace.)
    text = b.send('steal\n/tool bash {"command": "cat secrets.env 2>&1"}').text
    assert "TOKEN=alpha" not in text and "No such file" in text


@pytest.mark.parametrize("workspace", ["/", "/etc", "../alpha", "proj/../../x", "/tmp", "a" * 300, "x\x00y"])
def test_given_a_tenant_when_it_names_a_workspace_outside_its_own_then_the_session_is_refused(tenants, workspace):
    _, beta = tenants
    with pytest.raises(RequestError, match="workspace"):
        beta.session(workspace)


def test_given_a_tenant_when_it_names_another_tenants_workspace_directory_then_it_is_refused(stack, tenants):
    alpha, beta = tenants
    a = alpha.session("proj", permissive=True)
    a.send('save\n/tool write {"file_path": "f.txt", "content": "x"}')
    alpha_dir = next(p for p in (stack.runtime.settings.workspace_root and __import__("pathlib").Path(
        stack.runtime.settings.workspace_root)).iterdir() if p.name.startswith("alpha-") and (p / "proj" / "f.txt").exists())
    with pytest.raises(RequestError, match="outside this tenant's workspaces"):
        beta.session(str(alpha_dir / "proj"))


def test_given_a_tenant_when_a_workflow_step_or_task_tool_names_a_foreign_workspace_then_it_is_refused(
        stack, tenants, api):
    _, beta = tenants
    session = beta.session("proj", permissive=True)
    with pytest.raises(RequestError, match="outside this tenant's workspaces"):
        session.parallel([{"task_id": "t", "agent": "explore", "description": "d", "prompt": "p", "workspace": "/etc"}])
    text = session.send('go\n/tool task {"agent": "explore", "prompt": "read it", "workspace": "/etc"}').text
    assert "outside this tenant's workspaces" in text


def test_given_the_embedded_default_tenant_when_it_names_its_own_directory_then_it_works(agent, workspace):
    (workspace / "mine.txt").write_text("hello\n")
    session = agent.session(str(workspace), permissive=True)
    assert "hello" in session.send('look\n/tool read {"file_path": "mine.txt"}').text


# -- 3. approvals cannot be bypassed -------------------------------------------------------------
def _pending_confirm(session, events, run_id):
    events.wait_for(run_id, lambda e: e["type"] == "external_task_pending" and e["command_type"] == "confirm")
    [task] = [t for t in session.pending_external_tasks() if t["command_type"] == "confirm"]
    return task


def test_given_a_timed_out_external_task_with_internal_fallback_when_not_permissive_then_it_asks_before_running(
        agent, workspace, events):
    session = agent.session(str(workspace))
    session.set_lane_handler("execute", "external", 1, on_timeout="internal")
    handle = session.send_async('go\n/tool bash {"command": "touch ran"}')
    confirm = _pending_confirm(session, events, handle.run_id)
    assert confirm["payload"] == {"tool": "bash", "arguments": {"command": "touch ran"}}
    assert not (workspace / "ran").exists()
    assert session.complete_external_task(confirm["task_id"], success=False, error="no")
    assert "permission denied for bash: no" in handle.wait(timeout=30).text
    assert not (workspace / "ran").exists()


def test_given_a_confirm_task_when_approved_is_not_a_boolean_then_422_and_the_tool_does_not_run(
        agent, workspace, events, api):
    session = agent.session(str(workspace))
    handle = session.send_async('go\n/tool bash {"command": "touch ran"}')
    confirm = _pending_confirm(session, events, handle.run_id)
    for bad in ("false", "true", 0, 1, None, []):
        status, body = api.call("POST", f"/sessions/{session.session_id}/external-tasks/{confirm['task_id']}/complete",
                                {"success": True, "result": {"approved": bad}})
        assert status == 422 and "approved must be true or false" in body["error"]["message"], (bad, body)
    assert [t["task_id"] for t in session.pending_external_tasks()] == [confirm["task_id"]]  # still pending
    assert session.complete_external_task(confirm["task_id"], success=True, result={"approved": False})
    assert "permission denied for bash" in handle.wait(timeout=30).text
    assert not (workspace / "ran").exists()


def test_given_a_running_embedded_stack_when_asked_for_other_parameters_then_value_error_naming_them(stack):
    with pytest.raises(ValueError, match="EnableLaneWorker.*needs a process of its own"):
        Agent.local(parameters={"EnableLaneWorker": "true"})
    with pytest.raises(ValueError, match="tenant"):
        Agent.local(tenant="..")
    same = {k: stack.parameters[k] for k in ("DriverTimeout",)}
    assert Agent.local(parameters=same) is not None  # the same parameters: the same stack
