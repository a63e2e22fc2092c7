#!/usr/bin/env python
"""What a tenant's command can take and leave, measured on the embedded stack: the environment a
sandboxed `bash` sees, the memory of the stack's process while a command writes 200 MB, the time
the isolated runner adds to a command, and that nothing a command started outlives it.

    .venv/bin/python scripts/bench_isolation.py [--json bench-results/bench_isolation.json]

Figures are printed, never asserted.
"""
from __future__ import annotations

from bench_common import setup_env

setup_env()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default="bench-results/bench_isolation.json")
    args = p.parse_args()
    os.environ["OPENAI_API_KEY"] = "sk-bench-should-not-leak"  # a secret in the stack's environment

    from a3s_core.tools import isolation
    from a3s_serverless import Agent

    agent = Agent.local(tenant="bench")
    session = agent.session("iso", permissive=True)
    out: dict = {}

    text = session.send('env\n/tool bash {"command": "env | sort | paste -sd \' \'"}').text
    out["sandboxed_env"] = text.split("bash -> ", 1)[-1]
    out["secret_leaked"] = any(s in text for s in ("sk-bench", "AWS_", "A3S_", "OPENAI"))

    before = rss_mb()
    peak = [before]
    done = [False]

    def sample() -> None:
        while not done[0]:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.01)

    import threading

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    text = session.send('big\n/tool bash {"command": "head -c 200000000 /dev/zero | tr \'\\\\0\' a; echo"}').text
    done[0] = True
    sampler.join()
    out["output_200mb"] = {"seconds": round(time.monotonic() - started, 2), "rss_before_mb": round(before, 1),
                           "rss_peak_mb": round(peak[0], 1), "model_saw_chars": len(text)}

    with tempfile.TemporaryDirectory() as tmp:
        times = []
        for _ in range(20):
            t = time.monotonic()
            isolation.run("true", tmp, 5_000)
            times.append((time.monotonic() - t) * 1000)
        out["runner_overhead_ms"] = {"p50": round(statistics.median(times), 1), "max": round(max(times), 1)}
        marker = "41.2718"
        isolation.run(f"setsid sleep {marker} & (sleep {marker} &); nohup sleep {marker} >/dev/null 2>&1 &",
                      tmp, 5_000)
        left = [pid for pid in os.listdir("/proc") if pid.isdigit() and marker in
                _cmdline(pid)]
        out["processes_left_after_setsid_and_double_fork"] = len(left)
    out["children_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)

    print(json.dumps(out, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
