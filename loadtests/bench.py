"""Side-by-side throughput of qa-api and two baselines serving the same program on the same LM simulator.

    python loadtests/bench.py --users 16 64 --duration 30

For each app and user count it runs Locust headless (AnswerUser only), and reads the app process's
CPU time from /proc before and after, so the report gives requests/s, latency percentiles and CPU
milliseconds per request. Numbers are only comparable within one run on one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtests import real_model  # noqa: E402
from qa_core import contracts, registry  # noqa: E402
from qa_core.dataset import read_pairs  # noqa: E402
from qa_core.settings import CoreSettings  # noqa: E402
from tests.support import processes  # noqa: E402
from tests.support.programs import register_program  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = ROOT / "loadtests" / "results"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> set[int]:
    """A process and every live descendant."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, changed = {pid}, True
    while changed:
        grown = tree | {child for child, parent in parents.items() if parent in tree}
        changed, tree = grown != tree, grown
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and every live descendant (`mlflow server` runs its workers as children)."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


def lm_server_rss_mb(lm_base: str) -> float:
    """Memory of the llama-server listening at `lm_base`: the router and the model instances it started."""
    port = str(urlparse(lm_base).port)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if args[0].endswith(b"llama-server") and port.encode() in args:
                tree = process_tree(int(cmdline.parent.name))
                return sum(real_model.rss_mb(member) for member in tree)
    return 0.0


@contextlib.contextmanager
def app_process(
    kind: str, lm_base: str, mlflow_url: str, model: str, sampling: float, lm_model: str = "llamacpp/lm-simulator"
) -> Iterator[processes.ManagedProcess]:
    # Through the declared llama.cpp provider, as in production (a model name DSPy must look up costs CPU).
    lm_env = {"LM_MODEL": lm_model, "LM_API_BASE": lm_base, "LM_API_KEY": "sim", "LM_NUM_RETRIES": "0"}
    if kind == "qa-api":
        env = {
            **lm_env,
            "MLFLOW_TRACKING_URI": mlflow_url,
            "REGISTERED_MODEL_NAME": model,
            "MLFLOW_EXPERIMENT_NAME": f"{model}-traces",
            "TRACE_SAMPLING_RATIO": str(sampling),
            "MAX_INFLIGHT": "256",
            "LOG_LEVEL": "warning",
        }
        with processes.qa_api(env) as api:
            yield api
        return
    port = processes.free_port()
    module = {"minimal": "minimal_app", "tutorial": "tutorial_app"}[kind]
    args = [
        str(BIN / "python"),
        "-m",
        "uvicorn",
        f"loadtests.baselines.{module}:app",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with processes.running(
        args, f"http://127.0.0.1:{port}/docs", env={**lm_env, "PYTHONPATH": str(ROOT)}, name=kind
    ) as app:
        app.url = f"http://127.0.0.1:{port}"
        yield app


def locust(host: str, users: int, duration: int, prefix: Path) -> dict:
    args = [
        str(BIN / "locust"),
        "-f",
        str(ROOT / "loadtests/locustfile.py"),
        "AnswerUser",
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{duration}s",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    subprocess.run(args, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    with open(f"{prefix}_stats.csv") as handle:
        row = next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")
    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "rps": float(row["Requests/s"]),
        "p50_ms": float(row["50%"]),
        "p95_ms": float(row["95%"]),
        "p99_ms": float(row["99%"]),
    }


def measure(
    kind: str,
    users: list[int],
    duration: int,
    lm_base: str,
    mlflow: processes.ManagedProcess,
    model: str,
    sampling: float,
    label: str,
    lm_model: str = "llamacpp/lm-simulator",
) -> list[dict]:
    started = time.monotonic()
    with app_process(kind, lm_base, mlflow.url, model, sampling, lm_model) as app:
        ready_s = time.monotonic() - started  # process start to a 200 from its readiness route
        locust(app.url, 8, 5, RESULTS / f"warmup-{slug(label)}")  # imports, caches, connection pools
        rows = [
            {**row, "ready_s": round(ready_s, 2)}
            for row in load_rows(app, kind, users, duration, mlflow, label, slug(label))
        ]
    return rows


def slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in label).strip("-")


def load_rows(
    app: processes.ManagedProcess,
    kind: str,
    users: list[int],
    duration: int,
    mlflow: processes.ManagedProcess,
    label: str,
    prefix: str,
) -> list[dict]:
    """One Locust row per user count, with the app's and MLflow's CPU per request and the app's memory after it."""
    rows = []
    for count in users:
        before, mlflow_before = cpu_seconds(app.proc.pid), tree_cpu_seconds(mlflow.proc.pid)
        stats = locust(app.url, count, duration, RESULTS / f"{prefix}-u{count}")
        if kind == "qa-api":
            time.sleep(1.0)  # the last batch of traces lands, so MLflow's share is counted in its row
        cpu = cpu_seconds(app.proc.pid) - before
        mlflow_cpu = tree_cpu_seconds(mlflow.proc.pid) - mlflow_before
        rows.append(
            {
                "app": label,
                "users": count,
                **stats,
                "cpu_ms_per_request": round(1000 * cpu / max(1, stats["requests"]), 2),
                "mlflow_cpu_ms_per_request": round(1000 * mlflow_cpu / max(1, stats["requests"]), 2),
                "rss_mb": round(real_model.rss_mb(app.proc.pid), 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def real_model_rows(
    users: list[int], duration: int, mlflow: processes.ManagedProcess, record: int
) -> tuple[list[dict], dict]:
    """qa-api with SmolLM2 behind it at each user count, then the same LM requests sent straight to the server.

    Also one user's streaming time to first token and one batch request, through the same qa-api.
    """
    client = registry.configure_mlflow(CoreSettings(mlflow_tracking_uri=mlflow.url))
    model = f"bench-real-{uuid.uuid4().hex[:6]}"
    client.set_registered_model_alias(model, contracts.CHAMPION_ALIAS, register_program(client, model, 2))
    lm_model = "llamacpp/smollm2-135m-instruct"
    label = "qa-api, SmolLM2"
    rows, bodies, figures = [], [], {}
    questions = [pair.question for pair in read_pairs(CoreSettings(_env_file=None).dataset_dir / "dev.jsonl")]
    with processes.llama_server() as lm_base:
        with (
            real_model.recording_proxy(lm_base, bodies) as proxy,
            app_process("qa-api", proxy, mlflow.url, model, 1.0, lm_model) as app,
        ):
            locust(app.url, 4, record, RESULTS / "record-real")  # the requests the direct rows replay
        with app_process("qa-api", lm_base, mlflow.url, model, 1.0, lm_model) as app:
            rows += load_rows(app, "qa-api", users, duration, mlflow, label, slug(label))
            figures["stream"] = real_model.time_to_first_token(app.url, questions[:8])
            figures["batch"] = real_model.batch_throughput(app.url, questions, size=8)
        figures["lm_server_rss_mb"] = round(lm_server_rss_mb(lm_base), 1)
        for count in users:
            rows.append(
                {"app": "LM server alone", "users": count, **real_model.replay(bodies, lm_base, count, duration)}
            )
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(figures), flush=True)
    return rows, figures


def markdown(rows: list[dict], real: list[dict], figures: dict, latency_ms: int, duration: int) -> str:
    lines = [
        f"Measured by `make bench` on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, in one run: Locust "
        f"AnswerUser for {duration} s per row, LM simulator at {latency_ms} ms per call. qa-api runs with routing "
        "(champion and challenger at 50%), Prometheus metrics, and MLflow tracing at the sampling ratio in its row. "
        "Ratios are requests/s against the baseline at the same user count, in the same run. Ready is process "
        "start to a 200 from its readiness route (MLflow up); memory is the app's resident set after its row.",
        "",
        "| app | users | requests/s | p50 ms | p95 ms | p99 ms | CPU ms/request | MLflow CPU ms/request | failures "
        "| ready s | memory MB | vs minimal | vs tutorial |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    baselines = {app: {r["users"]: r["rps"] for r in rows if r["app"] == app} for app in ("minimal", "tutorial")}

    def ratio(app: str, row: dict) -> str:
        base = baselines[app].get(row["users"])
        return f"{row['rps'] / base:.2f}x" if base else "-"

    for r in rows:
        lines.append(
            f"| {r['app']} | {r['users']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
            f"{r['p99_ms']:.0f} | {r['cpu_ms_per_request']:.2f} | {r['mlflow_cpu_ms_per_request']:.2f} "
            f"| {r['failures']} | {r['ready_s']:.1f} | {r['rss_mb']:.0f} "
            f"| {ratio('minimal', r)} | {ratio('tutorial', r)} |"
        )
    if real:
        lines += real_model_markdown(real, figures, duration)
    return "\n".join(lines) + "\n"


def real_model_markdown(real: list[dict], figures: dict, duration: int) -> list[str]:
    alone = {r["users"]: r["rps"] for r in real if r["app"] == "LM server alone"}
    lines = [
        "",
        f"The real model, SmolLM2-135M-Instruct on llama-server, {duration} s per row: qa-api (tracing every "
        "answer) in front of it, then the chat completion requests qa-api sent, recorded on the way and replayed "
        "straight at the server by the same number of closed-loop users.",
        "",
        "| app | users | requests/s | p50 ms | p95 ms | failures | vs LM server alone |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in real:
        base = alone.get(r["users"])
        versus = f"{r['rps'] / base:.2f}x" if base and r["app"] != "LM server alone" else "-"
        lines.append(
            f"| {r['app']} | {r['users']} | {r['rps']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
            f"| {r['failures']} | {versus} |"
        )
    stream, batch = figures["stream"], figures["batch"]
    lines += [
        "",
        f"- Streaming, one user, {stream['streams']} questions: first token after {stream['ttft_p50_ms']:.0f} ms "
        f"(p50), final event after {stream['final_p50_ms']:.0f} ms.",
        f"- One batch request of {batch['questions']} questions: {batch['seconds']:.1f} s, "
        f"{batch['per_s']:.2f} questions/s, {batch['ok']} answered.",
        f"- llama-server's memory (router and loaded model) after the rows: {figures['lm_server_rss_mb']:.0f} MB.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument(
        "--sampling", type=float, nargs="+", default=[0.01, 1.0], help="qa-api TRACE_SAMPLING_RATIOs, one run each"
    )
    parser.add_argument("--apps", nargs="*", default=["qa-api", "minimal", "tutorial"])
    parser.add_argument("--real-users", type=int, nargs="*", default=[1, 4, 8], help="real-model rows; none: skip")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 users, 5 s rows, no real model")
    parser.add_argument("--markdown", type=Path, help="also write the table here (e.g. docs/results/load.md)")
    args = parser.parse_args()
    if args.quick:
        args.users, args.duration, args.real_users = [8], 5, []
    RESULTS.mkdir(parents=True, exist_ok=True)

    rows, real, figures = [], [], {}
    with (
        tempfile.TemporaryDirectory() as root,
        processes.lm_simulator(latency_ms=args.latency_ms) as lm_base,
        processes.mlflow_server(root) as mlflow_server,
    ):
        client = registry.configure_mlflow(CoreSettings(mlflow_tracking_uri=mlflow_server.url))
        model = f"bench-{uuid.uuid4().hex[:6]}"
        client.set_registered_model_alias(model, contracts.CHAMPION_ALIAS, register_program(client, model, 2))
        client.set_registered_model_alias(model, contracts.CHALLENGER_ALIAS, register_program(client, model, 2))
        registry.set_challenger_share(client, model, 0.5)
        for app in args.apps:
            for sampling in args.sampling if app == "qa-api" else [0.0]:
                label = f"qa-api (tracing {sampling:g})" if app == "qa-api" else app
                rows += measure(app, args.users, args.duration, lm_base, mlflow_server, model, sampling, label)
                time.sleep(1)
        if args.real_users:
            real, figures = real_model_rows(args.real_users, args.duration, mlflow_server, record=20)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps({"rows": rows, "real": real, **figures}, indent=2))
    table = markdown(rows, real, figures, args.latency_ms, args.duration)
    (RESULTS / f"bench-{stamp}.md").write_text(table)
    if args.markdown:
        args.markdown.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
