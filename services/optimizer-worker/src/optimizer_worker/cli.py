"""`optimizer-worker`: the queue consumer, and a one-off job run in the foreground.

optimizer-worker [worker]                        consume jobs from the queue (Celery, one job per process)
optimizer-worker run --optimizer X --budget N    run one job here and now, without the queue (measurements)
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
from typing import get_args

from optimizer_worker.settings import Settings
from qa_core import contracts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="optimizer-worker", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command")
    worker = commands.add_parser("worker", help="consume jobs from the queue")
    worker.add_argument("--loglevel", default="INFO")
    run = commands.add_parser("run", help="run one job in this process")
    run.add_argument("--optimizer", required=True, choices=get_args(contracts.OptimizerName))
    run.add_argument("--budget", type=int, required=True)
    run.add_argument("--train-limit", type=int)
    run.add_argument("--dev-limit", type=int)
    run.add_argument("--no-feedback", action="store_true", help="train on the shipped split only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.command == "run":
        sys.exit(run_once(args))
    from optimizer_worker.queue import app

    settings = app.conf.optimizer_settings
    app.worker_main(
        [
            "worker",
            f"--loglevel={getattr(args, 'loglevel', 'INFO')}",
            "--pool=prefork",
            "--concurrency=1",
            "--max-tasks-per-child=1",
            f"--queues={settings.queue_name}",
            f"--hostname=optimizer-worker-{socket.gethostname()}",
        ]
    )


# --8<-- [start:run-once]
def run_once(args: argparse.Namespace) -> int:
    """Create a job row and execute it in this process: the same claim, pipeline and registration as the queue."""
    from optimizer_worker import pipeline
    from optimizer_worker.db import migrate
    from optimizer_worker.jobs import JobStore, to_view

    settings = Settings()
    migrate(settings.database_url)
    store = JobStore(settings.database_url)
    request = contracts.JobCreate(
        optimizer=args.optimizer,
        budget=args.budget,
        dataset=contracts.DatasetOptions(
            include_feedback=not args.no_feedback, train_limit=args.train_limit, dev_limit=args.dev_limit
        ),
    )
    job, _ = store.create(request, trigger="cli")
    owner = f"cli:{socket.gethostname()}"
    claimed = store.claim(job.id, owner, settings.lease_timeout_s, settings.max_attempts)
    assert claimed is not None
    pipeline.prepare_process(settings)
    started = time.perf_counter()
    state = pipeline.execute(settings, store, claimed, owner)
    view = to_view(store.get(job.id), settings.run_link_base)
    print(json.dumps({**view.model_dump(), "wall_time_s": round(time.perf_counter() - started, 1)}, indent=2))
    return 0 if state == "succeeded" else 1


# --8<-- [end:run-once]
if __name__ == "__main__":
    main()
