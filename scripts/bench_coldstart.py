#!/usr/bin/env python
"""Cold start of every function in template.yaml: in a fresh Python process each time, the wall time
of importing its handler module and serving one realistic first request, against moto's server
(127.0.0.1, a free port) with the stack's tables, queues and bucket provisioned, the function's own
environment from the template, and Lambda's (LAMBDA_TASK_ROOT, an X-Ray trace header: the Tracer
is live, its segments go to a UDP socket here that drops them). Compared, in the same run, with a
process that does `import boto3; boto3.client("dynamodb")`. Also the size of the core layer, zipped,
as its Makefile builds it (aarch64 wheels from PyPI) and with boto3 and botocore added.

    .venv/bin/python scripts/bench_coldstart.py [--runs 5] [--only AuthorizerFunction,...] [--skip-layer]
                                                [--check] [--json bench-results/coldstart.json]

Each figure is the median of --runs processes, each run beside a baseline process of its own (a
ratio is the median of those pairs: it holds while a shared machine's load varies); wall time, and
CPU time beside it. Goals: the authorizer within 1.3x the baseline, every other function within 2x: a missed
one is marked, and with --check the exit code is 1. The X-Ray SDK in "Lambda" mode touches
/tmp/.aws-xray/initialized, as it does on AWS.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GOALS = {"AuthorizerFunction": 1.3}  # times the baseline; every other function: DEFAULT_GOAL
DEFAULT_GOAL = 2.0
TENANT, API_KEY = "bench-tenant", "a3s-bench-key"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}

# What a fresh process runs: the clock starts just before the handler's module is imported (Lambda's
# bootstrap has imported nothing of it) and stops when the first request is answered.
CHILD = r'''
import json, sys, time
spec = json.load(open(sys.argv[1]))
sys.path[:0] = spec["path"]


class Context:
    function_name, function_version, memory_limit_in_mb = spec["function"], "$LATEST", spec["memory"]
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + spec["function"]
    aws_request_id, log_group_name, log_stream_name = "bench-request", "/aws/lambda/bench", "bench"

    def get_remaining_time_in_millis(self):
        return 60_000


started, cpu = time.perf_counter(), time.process_time()
if spec["module"]:
    import importlib
    handler = getattr(importlib.import_module(spec["module"]), spec["handler"])
    imported = time.perf_counter()
    answer = handler(spec["event"], Context())
else:
    import boto3
    imported = time.perf_counter()
    answer = {"client": type(boto3.client("dynamodb")).__name__}
done, cpu = time.perf_counter(), time.process_time() - cpu
with open(spec["out"], "w") as out:
    json.dump({"import_s": imported - started, "total_s": done - started, "cpu_s": cpu, "answer": answer,
               "modules": sorted(sys.modules)}, out, default=str)
'''


class XRayDrain:
    """A UDP socket on 127.0.0.1 standing for the X-Ray daemon: it counts the segments and drops them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.segments, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recv(65536)
                self.segments += 1
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def sqs_event(body: dict[str, Any], queue: str) -> dict[str, Any]:
    now = str(int(time.time() * 1000))
    return {"Records": [{
        "messageId": "bench-message", "receiptHandle": "bench-receipt", "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now, "SenderId": "bench",
                       "ApproximateFirstReceiveTimestamp": now},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}", "awsRegion": "us-east-1"}]}


def http_event(method: str, path: str, authorizer: dict[str, Any] | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "accountId": "123456789012", "apiId": "bench", "domainName": "bench.example", "domainPrefix": "bench",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                 "userAgent": "bench"},
        "requestId": "bench-request", "routeKey": f"{method} {path}", "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()), "timeEpoch": int(time.time() * 1000)}
    if authorizer is not None:
        ctx["authorizer"] = {"lambda": authorizer}
    return {"version": "2.0", "routeKey": ctx["routeKey"], "rawPath": path, "rawQueryString": "",
            "headers": {"authorization": f"Bearer {API_KEY}", "host": "bench.example"},
            "requestContext": ctx, "isBase64Encoded": False}


class Stack:
    """moto's server with the template's resources, an API key, a session, and runs to advance."""

    def __init__(self, template: Path) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        from a3s_local.template import load_stack, provision

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.model = load_stack(template, {"EnableLaneWorker": "true"})  # every function the template has
        self.boto = boto3.session.Session(**{k.lower(): v for k, v in CREDENTIALS.items()
                                             if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
                                          region_name="us-east-1")
        clients = {s: self.boto.client(s, endpoint_url=self.endpoint)
                   for s in ("sqs", "dynamodb", "s3", "secretsmanager")}
        provision(self.model, **clients)
        self.clients = clients
        self.queue_names = {lid: q.name for lid, q in self.model.queues.items()}
        self.bucket = next(iter(self.model.buckets.values()))
        clients["s3"].put_object(Bucket=self.bucket, Key="bench/in.txt", Body=b"a workspace file\n")

    def presigned(self, method: str, key: str) -> str:
        return self.clients["s3"].generate_presigned_url(method, Params={"Bucket": self.bucket, "Key": key},
                                                         ExpiresIn=3600)

    def function_env(self, lid: str) -> dict[str, str]:
        return dict(self.model.functions[lid].environment)

    def seed(self, runs: int) -> tuple[str, list[str]]:
        """An API key, a session and `runs` queued runs (each process advances one of its own)."""
        import hashlib

        from a3s_core.api.schemas import CreateSessionBody, StartRunBody
        from a3s_core.api.service import Service
        from a3s_core.runtime import Runtime

        env = self.function_env(self.model.authorizer_function_id or "ApiFunction")
        api = next((lid for lid in self.model.functions if lid.startswith("Api")), None)
        env.update(self.function_env(api) if api else {})
        rt = Runtime.from_env(env, session=_EndpointSession(self.boto, self.endpoint))
        rt.store.put_api_key(hashlib.sha256(API_KEY.encode()).hexdigest(), TENANT)
        service = Service(rt, TENANT)
        session = service.create_session(CreateSessionBody())["session_id"]
        run_ids = [service.start_run(session, StartRunBody(prompt="hello"))["run_id"] for _ in range(runs)]
        return session, run_ids

    def run_status(self, run_id: str) -> str:
        from a3s_core.runtime import Runtime

        env = self.function_env("RunDriverFunction")
        rt = Runtime.from_env(env, session=_EndpointSession(self.boto, self.endpoint))
        return str(rt.store.get_run(TENANT, run_id).status)

    def close(self) -> None:
        self.server.stop()


class _EndpointSession:
    """A boto3 session whose clients all talk to moto's server."""

    def __init__(self, session: Any, endpoint: str) -> None:
        self._session, self._endpoint = session, endpoint

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint, **kwargs)


def events(stack: Stack, session_id: str, run_id: str) -> dict[str, tuple[dict[str, Any], Callable[[Any], bool]]]:
    """Each function's first request, and what a right answer looks like."""
    q = stack.queue_names
    no_failures: Callable[[Any], bool] = lambda out: out.get("batchItemFailures") == []  # noqa: E731
    lane = {"tenant": TENANT, "session_id": session_id, "task_id": "bench-no-such-task", "lane": "execute"}
    return {
        "AuthorizerFunction": (http_event("GET", "/sessions", None) | {"type": "REQUEST"},
                               lambda out: out == {"isAuthorized": True, "context": {"tenant_id": TENANT}}),
        "ApiFunction": (http_event("GET", "/sessions", {"tenant_id": TENANT}),
                        lambda out: out.get("statusCode") == 200 and session_id in out.get("body", "")),
        "RunDriverFunction": (sqs_event({"kind": "advance", "tenant": TENANT, "run_id": run_id},
                                        q.get("RunsQueue", "runs")), no_failures),
        "SweeperFunction": ({"version": "0", "id": "bench", "detail-type": "Scheduled Event", "source": "aws.events",
                             "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "region": "us-east-1", "resources": [], "detail": {}},
                            lambda out: isinstance(out, dict)),
        # The run the driver has just ended: read, found settled, nothing to give up.
        "RunsDLQFunction": (sqs_event({"kind": "advance", "tenant": TENANT, "run_id": run_id},
                                      q.get("RunsDLQ", "runs-dlq")), no_failures),
        # A task nobody can claim (there is none): looked up, found gone, acknowledged.
        "LaneWorkerFunction": (sqs_event(lane, q.get("ExecuteLaneQueue", "lane")), no_failures),
        # One file in (a presigned URL of the stack's bucket, as the caller makes it), a command that
        # reads it. (Nothing goes back: moto's server never answers urllib's form-typed PUT.)
        "SandboxFunction": ({"tool": "bash", "arguments": {"command": "wc -c in.txt"},
                             "files": {"in.txt": stack.presigned("get_object", "bench/in.txt")},
                             "upload_url": stack.presigned("put_object", "bench/changes.tar.gz")},
                            lambda out: out.get("error") is None and "in.txt" in str(out.get("result"))),
    }


def child_env(stack: Stack, lid: str | None, xray: XRayDrain, tracer: bool) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/"),
           **CREDENTIALS, "AWS_ENDPOINT_URL": stack.endpoint}
    if lid is None:
        return env
    spec = stack.model.functions[lid]
    env.update(spec.environment)
    env.update({"LAMBDA_TASK_ROOT": str(spec.code_dir), "AWS_LAMBDA_FUNCTION_NAME": lid,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory), "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
                "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                "AWS_XRAY_DAEMON_ADDRESS": xray.address, "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR"})
    if not tracer:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def one(stack: Stack, lid: str | None, event: Any, xray: XRayDrain, tracer: bool, tmp: Path) -> dict[str, Any]:
    spec = stack.model.functions[lid] if lid else None
    module, _, handler = (spec.handler.rpartition(".") if spec else ("", "", ""))
    paths = [str(spec.code_dir), *map(str, spec.layers_code_dirs)] if spec else []
    job = {"path": paths, "module": module, "handler": handler, "event": event, "function": lid or "baseline",
           "memory": spec.memory if spec else 128, "out": str(tmp / "out.json")}
    (tmp / "job.json").write_text(json.dumps(job))
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp / "job.json")], cwd=tmp, timeout=300,
                          env=child_env(stack, lid, xray, tracer), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{lid or 'baseline'}: the process failed:\n{done.stderr[-3000:]}")
    return json.loads((tmp / "out.json").read_text())


def measure(stack: Stack, runs: int, only: list[str]) -> dict[str, Any]:
    session_id, run_ids = stack.seed(runs)
    xray = XRayDrain()
    lids = only or list(stack.model.functions)
    missing = set(lids) - set(events(stack, session_id, run_ids[0]))
    if missing:
        raise SystemExit(f"no first request is defined for {sorted(missing)}: add one to events()")
    samples: dict[str, dict[str, list[float]]] = {k: {"total": [], "import": [], "cpu": [], "no_tracer": [],
                                                      "ratio": [], "cpu_ratio": []} for k in ["baseline", *lids]}
    heavy: dict[str, list[str]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="a3s-coldstart-") as tmp:
            for i in range(runs):  # rounds, so that the machine's load falls on every function alike
                for lid, (event, ok) in events(stack, session_id, run_ids[i]).items():
                    if lid not in lids:
                        continue
                    # Each sample beside a baseline of its own: the ratio holds when the load varies.
                    base = one(stack, None, None, xray, True, Path(tmp))
                    for key in ("total", "import", "cpu"):
                        samples["baseline"][key].append(base[f"{key}_s"])
                    got = one(stack, lid, event, xray, True, Path(tmp))
                    if not ok(got["answer"]):
                        raise SystemExit(f"{lid}: unexpected answer {json.dumps(got['answer'])[:500]}")
                    samples[lid]["total"].append(got["total_s"])
                    samples[lid]["import"].append(got["import_s"])
                    samples[lid]["cpu"].append(got["cpu_s"])
                    samples[lid]["ratio"].append(got["total_s"] / base["total_s"])
                    samples[lid]["cpu_ratio"].append(got["cpu_s"] / base["cpu_s"])
                    heavy[lid] = [m for m in ("pydantic", "jsonschema", "aws_xray_sdk", "a3s_core.engine.driver",
                                              "a3s_core.domain.items") if m in got["modules"]]
                    if lid != "RunDriverFunction":  # its run is advanced: no second go at it
                        off = one(stack, lid, event, xray, False, Path(tmp))
                        samples[lid]["no_tracer"].append(off["total_s"])
            for run_id in run_ids if "RunDriverFunction" in lids else ():
                if stack.run_status(run_id) != "succeeded":
                    raise SystemExit(f"run {run_id} was not driven to completion: {stack.run_status(run_id)}")
    finally:
        xray.close()
    base = statistics.median(samples["baseline"]["total"])
    base_cpu = statistics.median(samples["baseline"]["cpu"])
    out: dict[str, Any] = {"runs": runs, "baseline_s": round(base, 4), "baseline_cpu_s": round(base_cpu, 4),
                           "baseline_import_boto3_s": round(statistics.median(samples["baseline"]["import"]), 4),
                           "xray_segments_received": xray.segments, "functions": {}}
    for lid in lids:
        total = statistics.median(samples[lid]["total"])
        row = {"seconds": round(total, 4), "import_s": round(statistics.median(samples[lid]["import"]), 4),
               "ratio": round(statistics.median(samples[lid]["ratio"]), 2),
               "cpu_s": round(statistics.median(samples[lid]["cpu"]), 4),
               "cpu_ratio": round(statistics.median(samples[lid]["cpu_ratio"]), 2),
               "goal": GOALS.get(lid, DEFAULT_GOAL), "imports": heavy.get(lid, [])}
        if samples[lid]["no_tracer"]:
            row["tracer_off_seconds"] = round(statistics.median(samples[lid]["no_tracer"]), 4)
        row["met"] = row["ratio"] <= row["goal"]
        out["functions"][lid] = row
    return out


def _zip_mb(root: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "layer.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(root.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    z.write(path, path.relative_to(root))
        return round(archive.stat().st_size / 1e6, 2)


def layer_size() -> dict[str, float]:
    """The core layer as `sam build` makes it (layers/core/Makefile), zipped; and with the AWS SDK
    added, as SAM's python builder (which installs every dependency) made it."""
    pins = {line.split("==")[0]: line.split("==")[1].split()[0] for line in (REPO / "requirements.txt").read_text()
            .splitlines() if line.startswith(("boto3==", "botocore=="))}
    with tempfile.TemporaryDirectory(prefix="a3s-layer-") as tmp:
        subprocess.run(["make", "-s", "-C", str(REPO / "layers" / "core"), "build-CoreLayer", f"ARTIFACTS_DIR={tmp}"],
                       check=True, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
        lean = _zip_mb(Path(tmp))
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--only-binary=:all:", "--platform", "manylinux2014_aarch64", "--implementation", "cp",
                        "--python-version", "3.11", "--target", f"{tmp}/python", "--upgrade",
                        *(f"{k}=={v}" for k, v in pins.items())], check=True)
        return {"zipped_mb": lean, "with_boto3_botocore_mb": _zip_mb(Path(tmp))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--only", default="", help="comma-separated logical ids: measure these functions alone")
    p.add_argument("--skip-layer", action="store_true", help="do not build the layer (it downloads wheels)")
    p.add_argument("--check", action="store_true", help="exit 1 if a function misses its goal")
    p.add_argument("--template", default=str(REPO / "template.yaml"))
    p.add_argument("--json", default="bench-results/coldstart.json")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    for k, v in CREDENTIALS.items():  # fake credentials: moto only, never AWS
        os.environ[k] = v
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # this process's seeding is not the figure
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: no line per request
    stack = Stack(Path(args.template))
    try:
        only = [f for f in args.only.split(",") if f]
        unknown = sorted(set(only) - set(stack.model.functions))
        if unknown:
            p.error(f"--only: no such function in the template: {', '.join(unknown)} "
                    f"(there are {', '.join(stack.model.functions)})")
        result = measure(stack, args.runs, only)
    finally:
        stack.close()

    print(f"cold start, median of {args.runs} fresh processes: import the handler + serve one first request")
    print(f"{'function':<22}{'seconds':>9}{'x base':>8}{'goal':>6}{'cpu x base':>12}{'tracer off':>12}  heavy imports")
    print(f"{'baseline (boto3)':<22}{result['baseline_s']:>9.3f}{1:>8.2f}{'':>6}{1:>12.2f}")
    for lid, row in result["functions"].items():
        off = f"{row['tracer_off_seconds']:.3f}" if "tracer_off_seconds" in row else "-"
        mark = "" if row["met"] else "  MISSED"
        print(f"{lid:<22}{row['seconds']:>9.3f}{row['ratio']:>8.2f}{row['goal']:>6.1f}{row['cpu_ratio']:>12.2f}"
              f"{off:>12}  {', '.join(row['imports']) or '-'}{mark}")
    if not args.skip_layer:
        result["layer"] = layer_size()
        print(f"core layer, zipped: {result['layer']['zipped_mb']} MB "
              f"(with boto3+botocore: {result['layer']['with_boto3_botocore_mb']} MB)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.json}")
    return 1 if args.check and not all(row["met"] for row in result["functions"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
