"""Shared fixtures. The embedded stack is process-wide (moto patches botocore globally), so one
stack serves the whole session, with short timeouts so that redelivery tests finish quickly."""
from __future__ import annotations

import os

import pytest
from openapi_contract import Recorder

# Fake credentials before anything builds a boto3 client: nothing here may reach real AWS.
for _k, _v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_SECURITY_TOKEN": "testing",
               "AWS_SESSION_TOKEN": "testing"}.items():
    os.environ[_k] = _v
os.environ.pop("AWS_PROFILE", None)

TEST_PARAMETERS = {"DriverTimeout": "4", "RunsVisibilityTimeout": "5", "LaneVisibilityTimeout": "4"}
# Every answer of the shared stack is checked against its /openapi.json (tests/openapi_contract.py).
CONTRACT = Recorder()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from a3s_local import embedded
    from a3s_local.embedded import EmbeddedStack

    s = EmbeddedStack(parameters=TEST_PARAMETERS, workspace_root=str(tmp_path_factory.mktemp("workspaces"))).start()
    CONTRACT.watch(s)
    embedded._shared = s  # Agent.local(tenant=...) in a test talks to this stack
    yield s
    embedded._shared = None
    s.stop()


@pytest.fixture(autouse=True)
def responses_match_the_openapi_document():
    """Fails the test whose requests got an answer the document does not describe. (A request
    that a background worker of an earlier test makes late is counted against the test then running.)"""
    yield
    mismatches = CONTRACT.new_mismatches()
    assert not mismatches, "answers that do not match /openapi.json:\n" + "\n".join(mismatches)


def pytest_sessionfinish(session, exitstatus):
    # Answers given after the last test's check (a module or session fixture's teardown).
    late = CONTRACT.new_mismatches()
    if late:
        print("\nanswers that do not match /openapi.json:\n" + "\n".join(late))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    for line in CONTRACT.summary():
        terminalreporter.write_line(f"openapi contract: {line}")


@pytest.fixture
def agent(stack):
    from a3s_serverless import Agent

    return Agent(stack.transport(), local=True)


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws
