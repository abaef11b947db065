"""How many requests/s one simulator process serves at latency 0: its CPU cost per request.

Starts the simulator (latency 0, no pacing) on a free port and drives it with `wrk` when it is on PATH (a C
client, so the client takes little of the CPU), else with asyncio + httpx (the client is then the limit).
Requests are real DSPy ChatAdapter prompts: 5 passages of ~110 words, ChainOfThought outputs.

    python loadtests/lm_simulator/bench/rps.py [--seconds 8] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "r"); local base = f:read("*all"); f:close()
local n = 0
request = function()
  n = n + 1
  local body = {vary} and base:gsub("QUESTION", "question " .. n, 1) or base
  return wrk.format(nil, nil, nil, body)
end
"""


def dspy_body(stream: bool) -> dict:
    import dspy

    rng = random.Random(1)
    words = re.findall(r"\w+", "the simulator serves answers from passages found by bm25 in markdown")
    passages = [f"[doc-{i}#{i % 3}] " + " ".join(rng.choice(words) for _ in range(110)) for i in range(5)]
    signature = dspy.ChainOfThought("passages: list[str], question -> answer, citations: list[str]")
    inputs = {"passages": passages, "question": "QUESTION how are passages retrieved?"}
    messages = dspy.ChatAdapter().format(signature.predict.signature, demos=[], inputs=inputs)
    body = {"model": "lm-simulator", "messages": messages, "temperature": 0.0}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def run_wrk(url: str, body: dict, vary: bool, seconds: int, connections: int, tmp: Path) -> float:
    body_file, lua_file = tmp / f"body{len(list(tmp.iterdir()))}.json", tmp / "script.lua"
    body_file.write_text(json.dumps(body))
    lua_file.write_text(LUA.format(body=body_file, vary="true" if vary else "false"))
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua_file), url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


async def run_httpx(url: str, body: dict, vary: bool, seconds: int, connections: int) -> float:
    done, deadline, payload = 0, time.perf_counter() + seconds, json.dumps(body)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections), timeout=30) as client:

        async def worker(k: int) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                content = payload.replace("QUESTION", f"question {k}-{done}", 1) if vary else payload
                (await client.post(url, content=content, headers=headers)).raise_for_status()
                done += 1

        await asyncio.gather(*(worker(k) for k in range(connections)))
    return done / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    opts = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "lm_simulator", "--port", str(port), "--latency-ms", "0"]
    server = subprocess.Popen([*cmd, "--tokens-per-second", "0"])
    root = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{root}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        url = f"{root}/v1/chat/completions"
        client = "wrk" if shutil.which("wrk") else "httpx (client-bound)"
        cases = [
            ("same request again and again (answer cache hits)", dspy_body(False), False),
            ("a new question every request (answer computed)", dspy_body(False), True),
            ("streamed, a new question every request", dspy_body(True), True),
        ]
        print(f"| case ({client}, {opts.connections} connections) | requests/s | µs/request on one core |")
        print("| --- | ---: | ---: |")
        with tempfile.TemporaryDirectory() as tmp:
            for label, body, vary in cases:
                if shutil.which("wrk"):
                    rps = run_wrk(url, body, vary, opts.seconds, opts.connections, Path(tmp))
                else:
                    rps = asyncio.run(run_httpx(url, body, vary, opts.seconds, opts.connections))
                print(f"| {label} | {rps:,.0f} | {1e6 / rps:,.0f} |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
