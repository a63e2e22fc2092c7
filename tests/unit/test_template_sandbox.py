"""template.yaml: the tool sandbox is isolated per tenant, may reach nothing, and only the functions
that run tools may invoke it."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "sdk") not in sys.path:
    sys.path.insert(0, str(ROOT / "sdk"))

from a3s_local.template import load_stack  # noqa: E402


@pytest.fixture(scope="module")
def model() -> Any:
    return load_stack(ROOT / "template.yaml", {"EnableLaneWorker": "true"})


@pytest.fixture(scope="module")
def resources(model) -> dict[str, Any]:
    return model.transformed["Resources"]


def test_given_the_sandbox_function_then_it_is_isolated_per_tenant_and_untraced(resources) -> None:
    fn = resources["SandboxFunction"]["Properties"]
    assert fn["TenancyConfig"] == {"TenantIsolationMode": "PER_TENANT"}
    assert "TracingConfig" not in fn  # tracing would need X-Ray write permissions


def test_given_the_sandbox_role_then_it_may_write_its_own_logs_and_nothing_else(resources) -> None:
    fn = resources["SandboxFunction"]["Properties"]
    assert fn["Role"] == {"Fn::GetAtt": ["SandboxRole", "Arn"]}
    assert fn["LoggingConfig"] == {"LogGroup": {"Ref": "SandboxLogGroup"}}
    role = resources["SandboxRole"]["Properties"]
    assert "ManagedPolicyArns" not in role  # not the basic execution role: it writes to any log group
    [policy] = role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [{
        "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": {"Fn::GetAtt": ["SandboxLogGroup", "Arn"]}}]


def test_given_the_sandbox_then_none_of_the_kits_settings_reach_it(model) -> None:
    env = model.functions["SandboxFunction"].environment
    assert env and all(v == "" for k, v in env.items() if k.startswith(("A3S_", "OPENAI_")))


@pytest.mark.parametrize("function", ["RunDriverFunction", "LaneWorkerFunction"])
def test_given_a_function_that_runs_tools_then_it_invokes_the_sandbox_by_name(model, resources, function) -> None:
    env = resources[function]["Properties"]["Environment"]["Variables"]
    assert env["A3S_SANDBOX_FUNCTION"] == {"Ref": "SandboxFunction"}
    invoke = [s for s in model.policies[function] if "lambda:InvokeFunction" in str(s["Action"])]
    assert any("SandboxFunction" in str(s["Resource"]) for s in invoke)
    # beside it, only the run driver (runs handed over, engine/queues.py)
    assert all("SandboxFunction" in str(s["Resource"]) or "run-driver" in str(s["Resource"]) for s in invoke)


@pytest.mark.parametrize("function", ["ApiFunction", "AuthorizerFunction", "SweeperFunction", "SandboxFunction"])
def test_given_a_function_that_runs_no_tools_then_it_cannot_invoke_the_sandbox(model, function) -> None:
    assert not any("lambda:InvokeFunction" in str(s["Action"]) and "SandboxFunction" in str(s["Resource"])
                   for s in model.policies.get(function, []))
