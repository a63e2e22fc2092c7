"""a3s_core.telemetry on its own: metrics per invocation, bounded dimensions, and the X-Ray header
that queue messages carry so a run's round trip through SQS stays one trace."""
from __future__ import annotations

import json
import warnings

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from a3s_core import telemetry

HEADER = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def emf(capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "unit")
    capsys.readouterr()

    def lines() -> list[dict]:
        return [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    return lines


def test_given_metrics_in_an_invocation_then_each_dimension_set_is_one_emf_line_flushed_at_its_end(emf):
    with telemetry.invocation():
        telemetry.metric("ToolCalls", 1, Tool="bash", Lane="execute")
        telemetry.metric("ToolCalls", 1, Tool="bash", Lane="execute")
        telemetry.metric("ToolLatency", 12.5, Tool="bash", Lane="execute")
        telemetry.metric("TasksEnded", 1, Lane="query", Status="timed_out")
        assert emf() == []  # nothing before the end

    docs = emf()
    by_dims = {tuple(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]): d for d in docs}
    assert set(by_dims) == {("Lane", "Tool", "service"), ("Lane", "Status", "service")}
    tools = by_dims[("Lane", "Tool", "service")]
    assert (tools["ToolCalls"], tools["ToolLatency"], tools["Tool"], tools["service"]) == ([1.0, 1.0], [12.5], "bash", "unit")
    units = {m["Name"]: m["Unit"] for m in tools["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units == {"ToolCalls": "Count", "ToolLatency": "Milliseconds"}
    assert by_dims[("Lane", "Status", "service")]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "A3S"


def test_given_an_invocation_without_metrics_then_nothing_is_printed_and_nothing_warns(emf):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with telemetry.invocation():
            pass
    assert emf() == []


def test_given_no_invocation_then_metrics_are_dropped_not_kept_for_ever(emf):
    telemetry.metric("RunsStarted", 1)
    with telemetry.invocation():
        pass
    assert emf() == []


def test_given_an_invocation_that_raises_then_its_metrics_are_still_flushed(emf):
    with pytest.raises(RuntimeError), telemetry.invocation():
        telemetry.metric("MessagesGivenUp", 1)
        raise RuntimeError("boom")
    assert [d["MessagesGivenUp"] for d in emf()] == [[1.0]]


def test_given_wrong_or_missing_dimensions_then_the_metric_is_refused():
    with pytest.raises(ValueError, match="StopReason"):
        telemetry.metric("RunsEnded", 1)
    with pytest.raises(ValueError):
        telemetry.metric("RunsStarted", 1, RunId="run-1")  # an id is never a dimension
    with pytest.raises(KeyError):
        telemetry.metric("NoSuchMetric", 1)


def test_given_a_tool_name_the_model_made_up_then_its_dimension_is_other():
    assert [telemetry.tool_dimension(n) for n in ("bash", "read", "task", "confirm", "frobnicate-42")] == \
        ["bash", "read", "task", "confirm", "other"]


def _record(header: str | None) -> SQSRecord:
    attributes = {"ApproximateReceiveCount": "1", **({"AWSTraceHeader": header} if header else {})}
    return SQSRecord({"messageId": "m-1", "body": "{}", "attributes": attributes, "messageAttributes": {}})


def test_given_a_lambda_invocation_outside_any_record_then_messages_carry_its_own_trace(monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", HEADER)
    assert telemetry.trace_header() == HEADER
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    assert telemetry.trace_header() is None


def test_given_a_record_then_its_log_lines_carry_its_ids_and_the_flow_trace_root(monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "unit-logs")
    log = telemetry.logger()
    capsys.readouterr()
    with telemetry.sqs_record(_record(HEADER), {"tenant": "t", "run_id": "run-1", "kind": "advance"}):
        log.warning("inside")
    log.warning("outside")
    inside, outside = [json.loads(x) for x in capsys.readouterr().out.splitlines()][-2:]
    assert (inside["tenant"], inside["run_id"], inside["flow_trace_id"]) == \
        ("t", "run-1", "1-67891233-abcdef012345678912345678")
    assert "run_id" in outside  # the ids stay for the rest of this record's handling thread ...
    telemetry.correlate()
    log.warning("cleared")
    assert "run_id" not in json.loads(capsys.readouterr().out.splitlines()[-1])  # ... until the next correlate


def test_given_the_tracer_off_aws_then_model_and_tool_calls_cost_nothing_and_never_fail(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert telemetry.tracer().disabled

    class Run:
        tenant, run_id, model = "t", "run-1", "scripted"

    with telemetry.invocation():
        with telemetry.model_call(Run()):
            pass
        with telemetry.tool_call("t", "run-1", "bash", "execute"):
            pass
