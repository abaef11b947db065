"""Measure every optimizer on the real model, one job at a time, and print a markdown table.

    .venv/bin/python services/optimizer-worker/bench/measure.py --train-limit 16 --dev-limit 20

Needs an LM server (`make lm`) and an MLflow server (MLFLOW_TRACKING_URI). Each row is one
`optimizer-worker run` process (the same pipeline a queued job runs), so each compile gets its own
process. The champion is the shipped baseline in every job, so its score is the baseline's score on
the same dev examples, measured in the same job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

DEFAULT_PLAN = "bootstrap_fewshot:2,bootstrap_random_search:2,simba:2,gepa:30,miprov2:1"


def run_job(optimizer: str, budget: int, train_limit: int, dev_limit: int, log_dir: Path) -> dict:
    command = [
        sys.executable, "-m", "optimizer_worker.cli", "run",
        "--optimizer", optimizer, "--budget", str(budget),
        "--train-limit", str(train_limit), "--dev-limit", str(dev_limit), "--no-feedback",
    ]  # fmt: skip
    started = time.perf_counter()
    log = log_dir / f"{optimizer}-b{budget}.log"
    with log.open("w") as err:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=err, text=True, env=os.environ)
    wall = time.perf_counter() - started
    view = json.loads(done.stdout[done.stdout.index("{") :]) if "{" in done.stdout else {"state": "crashed"}
    row = {"optimizer": optimizer, "budget": budget, "process_wall_s": round(wall, 1), "view": view}
    if view.get("mlflow_run_id"):
        client = MlflowClient()
        run = client.get_run(view["mlflow_run_id"])
        children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
        evals = {c.info.run_name: c.data.metrics for c in children if c.info.run_name.endswith("-dev")}
        row["metrics"] = run.data.metrics
        row["eval_lm_calls"] = {name: m.get("lm_calls") for name, m in evals.items()}
        row["command"] = " ".join(["optimizer-worker", *command[3:]])
    return row


def table(rows: list[dict]) -> str:
    """One row per job: the candidate's dev scores next to the baseline's, measured in the same job."""
    lines = [
        "| optimizer | budget | candidate dev score | baseline dev score (same job) | candidate F1 / citation "
        "| decision | optimize time | optimize LM calls | job time | job LM calls |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        view, m = r["view"], r.get("metrics", {})
        if view.get("state") != "succeeded":
            lines.append(f"| {r['optimizer']} | {r['budget']} | failed: {view.get('error')} | | | | | | | |")
            continue
        calls = m.get("optimize_lm_calls", 0) + sum(v or 0 for v in r["eval_lm_calls"].values())
        lines.append(
            f"| {r['optimizer']} | {r['budget']} | {m['candidate_dev_combined']:.3f} "
            f"| {m['champion_dev_combined']:.3f} "
            f"| {m['candidate_dev_f1']:.3f} / {m['candidate_dev_citation']:.3f} | {view['decision']} "
            f"| {m['optimize_wall_time_s']:.0f} s | {m['optimize_lm_calls']:.0f} | {r['process_wall_s']:.0f} s "
            f"| {calls:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--plan", default=DEFAULT_PLAN, help="optimizer:budget,... run in this order")
    parser.add_argument("--train-limit", type=int, default=16)
    parser.add_argument("--dev-limit", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("reports/optimizers"))
    parser.add_argument("--table-only", action="store_true", help="print the table of an earlier results.json")
    args = parser.parse_args()
    if args.table_only:
        print(table(json.loads((args.out / "results.json").read_text())))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in args.plan.split(","):
        optimizer, budget = item.split(":")
        print(f"running {optimizer} budget {budget} ...", flush=True)
        row = run_job(optimizer, int(budget), args.train_limit, args.dev_limit, args.out)
        rows.append(row)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))
        print(table(rows), flush=True)
    (args.out / "results.md").write_text(table(rows) + "\n")


if __name__ == "__main__":
    main()
