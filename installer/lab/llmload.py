"""Simulated Continue users against an OpenAI-compatible server: code completions and
streamed chat, N users at once, bounded in count and time. Standard library only, so the
same file runs on a lab host (``python3 - ARGS < llmload.py``) next to the server it
measures. Prints one JSON document: per kind, P50/P95/P99 of the total time, time to first
token for chat, tokens, errors by status.

Usage: python3 llmload.py --url http://HOST:PORT/v1 [--key KEY] --model NAME
           [--kind completion|chat] [--users N] [--requests R] [--duration S]
           [--stop-file PATH]
"""


import argparse
import http.client
import json
import math
import os
import statistics
import sys
import threading
import time
import urllib.parse
from typing import Any

MAX_USERS = 64
MAX_DURATION_S = 600.0
PROMPT = "def fibonacci(n):\n    "
SAMPLES = 5000  # latencies returned per run, at most
QUESTION = "In one sentence: what does a Python list comprehension do?"


def _request(url: urllib.parse.ParseResult, key: str, path: str, body: dict[str, Any],
             stream: bool, timeout: float) -> dict[str, Any]:
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    t0 = time.perf_counter()
    first = None
    tokens = 0
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn.request("POST", url.path.rstrip("/") + path, json.dumps(body), headers)
        r = conn.getresponse()
        if r.status != 200:
            r.read(65536)
            return {"status": r.status, "total": time.perf_counter() - t0}
        if not stream:
            doc = json.loads(r.read(1 << 20))
            first = time.perf_counter() - t0
            tokens = int((doc.get("usage") or {}).get("completion_tokens") or 0)
        else:
            for raw in r:
                line = raw.strip()
                if not line.startswith(b"data:") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[5:])
                delta = ((chunk.get("choices") or [{}])[0].get("delta") or {}).get("content")
                if delta:
                    tokens += 1
                    if first is None:
                        first = time.perf_counter() - t0
        return {"status": 200, "total": time.perf_counter() - t0, "first": first,
                "tokens": tokens}
    except (OSError, ValueError, http.client.HTTPException) as e:
        return {"status": type(e).__name__, "total": time.perf_counter() - t0}
    finally:
        conn.close()


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))  # rank ceil(P/100 N)
    return s[k]


def summary(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    ok = [r for r in results if r["status"] == 200]
    totals = [r["total"] for r in ok]
    firsts = [r["first"] for r in ok if r.get("first") is not None]
    errors: dict[str, int] = {}
    for r in results:
        if r["status"] != 200:
            errors[str(r["status"])] = errors.get(str(r["status"]), 0) + 1
    return {"requests": len(results), "ok": len(ok), "errors": errors,
            "error_rate": (len(results) - len(ok)) / len(results) if results else None,
            "wall_s": wall, "tokens": sum(r.get("tokens", 0) for r in ok),
            "total_s": {f"p{p}": percentile(totals, p) for p in (50, 95, 99)},
            "first_token_s": {f"p{p}": percentile(firsts, p) for p in (50, 95, 99)},
            "mean_s": statistics.fmean(totals) if totals else None,
            # the raw figures, for a histogram (bounded)
            "samples": totals[:SAMPLES], "first_samples": firsts[:SAMPLES]}


def run(url: str, key: str, model: str, kind: str, users: int, requests: int,
        duration: float, max_tokens: int, stop_file: str = "") -> dict[str, Any]:
    users = max(1, min(users, MAX_USERS))
    duration = max(1.0, min(duration, MAX_DURATION_S))
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise SystemExit(f"--url must be http://HOST:PORT/v1, not {url!r}")
    if model == "auto":  # the server's (first) model
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=30)
        conn.request("GET", parsed.path.rstrip("/") + "/models",
                     headers={"Authorization": f"Bearer {key}"} if key else {})
        model = json.loads(conn.getresponse().read(1 << 20))["data"][0]["id"]
        conn.close()
    if kind == "completion":
        path, stream = "/completions", False
        body: dict[str, Any] = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens,
                                "temperature": 0}
    else:
        path, stream = "/chat/completions", True
        body = {"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": QUESTION}]}
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration
    left = [requests]

    def user() -> None:
        while time.monotonic() < stop and not (stop_file and os.path.exists(stop_file)):
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            r = _request(parsed, key, path, body, stream, timeout=max(5.0, stop -
                                                                        time.monotonic()))
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, daemon=True) for _ in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 60)
    out = summary(results, time.perf_counter() - t0)
    out.update(kind=kind, users=users, model=model, max_tokens=max_tokens)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Simulated Continue users against an "
                                 "OpenAI-compatible server (bounded).")
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", default=os.environ.get("LLMLOAD_KEY", ""),
                    help="the API key (default: $LLMLOAD_KEY; a process list shows --key)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--kind", choices=["completion", "chat"], default="completion")
    ap.add_argument("--users", type=int, default=1)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--stop-file", default="",
                    help="stop early (after the requests in flight) once this file exists")
    a = ap.parse_args(argv)
    json.dump(run(a.url, a.key, a.model, a.kind, a.users, a.requests, a.duration,
                  a.max_tokens, a.stop_file), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
