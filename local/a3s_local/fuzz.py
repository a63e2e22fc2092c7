"""`make fuzz`: Schemathesis against the `make dev` stack, from the API's own /openapi.json.

Every request it makes, valid or not, must get an answer below 500: a 5xx or a dropped connection
is a bug of the kit. The run stays on 127.0.0.1 and ends by itself (an example budget per
operation and a time limit).

    python -m a3s_local.fuzz --max-examples 100 --max-time 600
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .embedded import LOCAL_API_KEY

# The failures that are bugs here; the other Schemathesis checks (documented status codes and the
# like) judge the OpenAPI document rather than the kit and can be asked for with --checks.
CHECKS = "not_a_server_error"
_NETWORK = ("ConnectionError", "RemoteDisconnected", "ConnectionReset", "ReadTimeout", "Timeout",
            "ChunkedEncodingError", "ProtocolError", "IncompleteRead")


@dataclass
class FuzzResult:
    cases: int = 0                                   # requests made and answered
    by_status: dict[int, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)   # "METHOD url -> status: body"
    no_answer: list[str] = field(default_factory=list)       # requests whose connection was dropped
    errors: list[str] = field(default_factory=list)          # what Schemathesis reported as errors
    seed: int = 0
    exit_code: int = 0
    timed_out: bool = False

    @property
    def network_errors(self) -> list[str]:
        return self.no_answer + [e for e in self.errors if any(n in e for n in _NETWORK)]

    @property
    def ok(self) -> bool:
        return self.cases > 0 and not self.server_errors and not self.network_errors and not self.timed_out

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        return (f"{self.cases} cases, {len(self.server_errors)} answered 5xx, {len(self.no_answer)} without an "
                f"answer, {len(self.errors)} errors ({statuses})"
                + (" - stopped by the time limit" if self.timed_out else "") + f"; seed {self.seed}")


def _body(response: dict[str, Any]) -> str:
    content = response.get("content") or {}
    raw = content.get("$base64")
    return base64.b64decode(raw).decode("utf-8", "replace") if raw else str(content.get("string", ""))


def read_events(path: Path) -> FuzzResult:
    """Count what an NDJSON event report of `st run` says came back."""
    result = FuzzResult()
    for line in path.read_text().splitlines():
        event = json.loads(line)
        kind, data = next(iter(event.items()))
        if kind == "ScenarioFinished":
            for interaction in (data.get("recorder") or {}).get("interactions", {}).values():
                request, response = interaction.get("request") or {}, interaction.get("response")
                where = f"{request.get('method')} {request.get('uri')}"
                if not response:
                    result.no_answer.append(where)
                    continue
                status = int(response["status_code"])
                result.cases += 1
                result.by_status[status] = result.by_status.get(status, 0) + 1
                if status >= 500:
                    result.server_errors.append(f"{where} -> {status}: {_body(response)[:300]}")
        elif kind == "NonFatalError":  # a dropped connection is one of these too
            value = data.get("value") or {}
            result.errors.append(f"{data.get('label')}: {value.get('type')}: {str(value.get('message'))[:300]}")
    return result


def fuzz(endpoint: str, api_key: str = LOCAL_API_KEY, max_examples: int = 10, max_time: int = 90,
         seed: int | None = None, checks: str = CHECKS, workdir: str | Path | None = None) -> FuzzResult:
    """One `st run` against a running stack at `endpoint` (which must be on 127.0.0.1), bounded by
    max_examples per operation and phase; max_time (seconds) stops it if that takes too long."""
    if not endpoint.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"fuzzing stays on this machine: {endpoint!r} is not a loopback endpoint")
    with tempfile.TemporaryDirectory(prefix="a3s-fuzz-", dir=workdir) as tmp:
        report = Path(tmp) / "events.ndjson"
        args = [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
                "run", f"{endpoint}/openapi.json", "--header", f"Authorization: Bearer {api_key}",
                "--checks", checks, "--max-examples", str(max_examples),
                "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "30",
                "--continue-on-failure", "--no-shrink",  # every case runs and counts, failing or not
                "--report", "ndjson", "--report-ndjson-path", str(report)]
        seed = random.randrange(2**31) if seed is None else seed  # printed, so that a failing run can be replayed
        args += ["--seed", str(seed)]
        # Hypothesis keeps its example database in the working directory: a scratch one, not the repo.
        env = {**os.environ, "NO_COLOR": "1", "NO_PROXY": "127.0.0.1,localhost"}
        try:
            proc = subprocess.run(args, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=max_time)
            exit_code, output = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as err:  # the budget is in examples; this is the backstop
            # the partial output comes as bytes whatever text= said
            partial = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
            exit_code, output = -1, f"stopped after {max_time} s\n{partial}"
        if not report.exists():
            raise RuntimeError(f"schemathesis wrote no report (exit {exit_code}):\n{output[-3000:]}")
        result = read_events(report)
        result.seed, result.exit_code, result.timed_out = seed, exit_code, exit_code == -1
        return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fuzz the local stack's HTTP API with Schemathesis.")
    p.add_argument("--max-examples", type=int, default=int(os.environ.get("FUZZ_EXAMPLES", "100")),
                   help="test cases per operation and phase (env FUZZ_EXAMPLES)")
    p.add_argument("--max-time", type=int, default=int(os.environ.get("FUZZ_MAX_TIME", "600")),
                   help="stop the run after this many seconds (env FUZZ_MAX_TIME)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checks", default=CHECKS, help="Schemathesis checks, e.g. all")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="a3s-fuzz-ws-") as workspaces:
        server = subprocess.Popen([sys.executable, "-m", "a3s_local.server", "--port", "0",
                                   "--workspace-root", workspaces], stdout=subprocess.PIPE, text=True)
        try:
            if server.stdout is None:  # not so with stdout=PIPE; it narrows the type
                raise RuntimeError("the local server's output is not a pipe")
            info = json.loads(server.stdout.readline())  # the server's first line names its endpoint
            print(f"fuzzing {info['endpoint']} ({args.max_examples} examples per operation, "
                  f"at most {args.max_time} s)", flush=True)
            result = fuzz(info["endpoint"], info["api_key"], args.max_examples, args.max_time, args.seed, args.checks)
        finally:
            server.terminate()
            server.wait(timeout=30)
    for line in result.server_errors + result.no_answer + result.errors:
        print("  " + line)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
