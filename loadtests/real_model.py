"""The real model's rows of `make bench`: qa-api in front of llama-server, and llama-server alone.

qa-api's rows are Locust AnswerUsers, as for the simulator. For the LM server's own rows, the chat
completion requests qa-api sent are recorded on the way (a forwarding proxy in this process) and
replayed straight at the server by closed-loop users: the same prompts and response schemas, with
qa-api's work taken away. The two rows side by side are what qa-api costs on top of the model.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@contextlib.contextmanager
def recording_proxy(target: str, bodies: list[bytes]) -> Iterator[str]:
    """An HTTP proxy to `target` (an LM server's /v1 URL) that keeps every chat completion body it forwards."""

    class Forward(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.endswith("/chat/completions"):
                bodies.append(body)
            request = urllib.request.Request(
                target + self.path.removeprefix("/v1"), data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as reply:
                    status, payload = reply.status, reply.read()
            except urllib.error.HTTPError as error:
                status, payload = error.code, error.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


def replay(bodies: list[bytes], lm_base: str, users: int, duration: float) -> dict:
    """`users` closed-loop clients send the recorded bodies in turn for `duration` seconds."""
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + duration
    lock = threading.Lock()

    def user(offset: int) -> None:
        nonlocal failures
        turn = offset
        while time.monotonic() < deadline:
            body = bodies[turn % len(bodies)]
            turn += users
            request = urllib.request.Request(
                f"{lm_base}/chat/completions", data=body, headers={"Content-Type": "application/json"}
            )
            started = time.monotonic()
            try:
                urllib.request.urlopen(request, timeout=120).close()
                with lock:
                    latencies.append(time.monotonic() - started)
            except OSError:
                with lock:
                    failures += 1

    started = time.monotonic()
    with ThreadPoolExecutor(users) as pool:
        list(pool.map(user, range(users)))
    elapsed = time.monotonic() - started
    ordered = sorted(latencies) or [0.0]
    return {
        "requests": len(latencies),
        "failures": failures,
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def time_to_first_token(api_url: str, questions: list[str]) -> dict:
    """One user streams each question: seconds to the first `token` event and to the `final` event."""
    first, final = [], []
    for question in questions:
        request = urllib.request.Request(
            f"{api_url}/v1/answer/stream",
            data=json.dumps({"question": question}).encode(),
            headers={"Content-Type": "application/json", "X-Synthetic": "1"},
        )
        started, first_token = time.monotonic(), None
        with urllib.request.urlopen(request, timeout=120) as stream:
            for line in stream:
                if line.startswith(b"event: token") and first_token is None:
                    first_token = time.monotonic() - started
                if line.startswith(b"event: final"):
                    final.append(time.monotonic() - started)
                    first.append(first_token if first_token is not None else final[-1])
                    break
    return {
        "streams": len(final),
        "ttft_p50_ms": 1000 * statistics.median(first or [0.0]),
        "final_p50_ms": 1000 * statistics.median(final or [0.0]),
    }


def batch_throughput(api_url: str, questions: list[str], size: int) -> dict:
    """One `/v1/answer/batch` request of `size` questions: questions answered per second."""
    request = urllib.request.Request(
        f"{api_url}/v1/answer/batch",
        data=json.dumps({"questions": questions[:size]}).encode(),
        headers={"Content-Type": "application/json", "X-Synthetic": "1"},
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as reply:
        results = json.load(reply)["results"]
    elapsed = time.monotonic() - started
    return {"questions": size, "ok": sum(r["ok"] for r in results), "seconds": elapsed, "per_s": size / elapsed}


def rss_mb(pid: int) -> float:
    """Resident memory of one process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
