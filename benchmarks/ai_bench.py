#!/usr/bin/env python3
"""The AI path's latency: N simulated Continue users, code completion and streamed chat,
directly against the inference server and through LiteLLM in the same run (the gateway's
overhead as a ratio), beside seed 001's go/no-go thresholds.

Not a test: it prints figures. Runs against a deployed site (the lab `airlock demo` left
up, or any inventory): the load runs on the LLM gateway host (installer/lab/llmload.py over
SSH), so only that host's own addresses receive traffic; users, requests and time bounded.
In the lab the server is llama.cpp on a CPU (the stand-in for vLLM on a GPU): its figures
say nothing about a GPU site's latency.

Usage: python benchmarks/ai_bench.py -i inventories/lab/hosts.yml --site OUT/site
           [--user alice] [--users 1,4] [--requests 20] [--chat-requests 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer.lab import aipath

ROOT = Path(__file__).resolve().parent.parent


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:7.0f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-i", "--inventory", type=Path, required=True)
    ap.add_argument("--site", type=Path, required=True)
    ap.add_argument("--user", default=None,
                    help="whose LiteLLM key the gateway runs use (their limits apply); "
                         "default: the admin's (master key), so the limiter does not refuse "
                         "the load itself")
    ap.add_argument("--users", default="1,4", help="concurrent users, a list (at most 64)")
    ap.add_argument("--requests", type=int, default=20, help="completions per run")
    ap.add_argument("--chat-requests", type=int, default=5, help="chats per run")
    ap.add_argument("--duration", type=float, default=120, help="seconds per run, at most")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    runs = []
    for n in (int(x) for x in a.users.split(",")):
        runs.append(aipath.latencies(ROOT, a.inventory.resolve(), a.site.resolve(),
                                     user=a.user, users=n, requests=a.requests,
                                     chat_requests=a.chat_requests, duration=a.duration,
                                     say=lambda m: print("#", m, file=sys.stderr)))
    if a.json:
        json.dump(runs, sys.stdout, indent=1)
        print()
        return 0
    print(f"engine: {runs[0]['engine']}; gateway key: {runs[0]['key']}" + (
        f"  ({runs[0]['stand_in']})" if runs[0]["stand_in"] else ""))
    print(f"{'kind':<11}{'users':>5} {'via':<8}{'P50':>10}{'P95':>10}{'P99':>10}"
          f"{'TTFT P50':>11}{'TTFT P95':>11}  errors   gateway/direct (P50, P95)")
    for m in runs:
        for kind in ("completion", "chat"):
            for via in ("direct", "litellm"):
                r = m[kind][via]
                t, f = r["total_s"], r["first_token_s"]
                ratio = ""
                if via == "litellm":
                    ratio = "  ".join(f"x{x:.2f}" if x else "-" for x in (
                        aipath.overhead(m, kind, "p50"), aipath.overhead(m, kind, "p95")))
                errs = ",".join(f"{k}x{v}" for k, v in sorted(r["errors"].items()))
                print(f"{kind:<11}{m['users']:>5} {via:<8}{_ms(t['p50'])}{_ms(t['p95'])}"
                      f"{_ms(t['p99'])} {_ms(f['p50']) if kind == 'chat' else '':>10}"
                      f" {_ms(f['p95']) if kind == 'chat' else '':>10}  "
                      f"{r['requests'] - r['ok']:>3}/{r['requests']:<4} {ratio} {errs}")
    for kind, th in aipath.THRESHOLDS.items():
        print(f"seed 001 {kind}: P95 < {th['p95_max_s'] * 1000:.0f} ms minimum, "
              f"< {th['p95_target_s'] * 1000:.0f} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
