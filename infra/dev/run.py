"""`make dev`: the compose stack as local processes, without Docker.

SQLite instead of PostgreSQL, an artifact folder under .state/dev/ instead of a volume, the worker's embedded
queue (kombu's SQLAlchemy transport on SQLite) instead of Redis, and the local llama.cpp server. It starts
everything in dependency order, waits for each health endpoint, prints the URLs, and on Ctrl-C (or SIGTERM)
stops every process it started, each with its whole process group.

    .venv/bin/python infra/dev/run.py                 # what `make dev` runs
    .venv/bin/python infra/dev/run.py --lm simulator  # the LM simulator instead of SmolLM2 (fast, fake answers)
    QA_API_PORT=18000 ... infra/dev/run.py            # other ports: QA_API_PORT WORKER_API_PORT FEEDBACK_UI_PORT
                                                      # MLFLOW_PORT LM_PORT
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
QUIET_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_OTLP_EXPORTER": "false",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class Ports:
    qa_api: int = int(os.environ.get("QA_API_PORT", 8000))
    worker_api: int = int(os.environ.get("WORKER_API_PORT", 8001))
    feedback_ui: int = int(os.environ.get("FEEDBACK_UI_PORT", 8002))
    mlflow: int = int(os.environ.get("MLFLOW_PORT", 5000))
    lm: int = int(os.environ.get("LM_PORT", 8080))


# --8<-- [start:env]
def stack_env(state: Path, ports: Ports, lm: str) -> dict[str, str]:
    """The settings every service reads: the same names as in docker-compose.yml, local values."""
    lm_base = f"http://127.0.0.1:{ports.lm}/v1"
    return {
        **QUIET_ENV,
        "APP_ENV": "dev",
        "LM_MODEL": "llamacpp/smollm2-135m-instruct" if lm == "llama" else "openai/lm-simulator",
        "LM_API_BASE": lm_base,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports.mlflow}",
        "MLFLOW_UI_URL": f"http://127.0.0.1:{ports.mlflow}",
        # The worker: jobs table and queue in SQLite files (the embedded mode: no Redis, no PostgreSQL).
        "WORKER_DATABASE_URL": f"sqlite:///{state}/optimizer-jobs.db",
        "BROKER_URL": f"sqla+sqlite:///{state}/optimizer-broker.db",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(ports.worker_api),
        "FEEDBACK_DATABASE_URL": f"sqlite:///{state}/feedback-ui.db",
        "QA_API_URL": f"http://127.0.0.1:{ports.qa_api}",
        "WORKER_API_URL": f"http://127.0.0.1:{ports.worker_api}",
        # Fine-tuning jobs write adapters where the LM server reads them, as the compose volume does.
        "LM_SERVER_ADAPTERS_DIR": str(state / "adapters"),
        "FINETUNE_WORK_DIR": os.environ.get("FINETUNE_WORK_DIR", str(state / "finetune")),
        # As in compose: five new ratings or corrections start a job; only the real model can be fine-tuned.
        "AUTO_TRIGGER_MIN_RATINGS": os.environ.get("AUTO_TRIGGER_MIN_RATINGS", "5"),
        "AUTO_TRIGGER_OPTIMIZER": os.environ.get(
            "AUTO_TRIGGER_OPTIMIZER", "bootstrap_finetune" if lm == "llama" else "bootstrap_fewshot"
        ),
        "AUTO_TRIGGER_BUDGET": os.environ.get("AUTO_TRIGGER_BUDGET", "80" if lm == "llama" else "2"),
    }


# --8<-- [end:env]


@dataclass
class Service:
    name: str
    args: list[str]
    health: str = ""  # URL that answers 2xx when ready; empty for one-shot jobs and the queue consumer
    ready_text: str = ""  # for a process without HTTP: a log line that says it is ready
    env: dict[str, str] = field(default_factory=dict)
    one_shot: bool = False
    timeout_s: float = 180.0


# --8<-- [start:services]
def services(state: Path, ports: Ports, lm: str, env: dict[str, str]) -> list[Service]:
    """In start order; each waits for the ones before it."""
    worker_env = {"DATABASE_URL": env["WORKER_DATABASE_URL"]}
    feedback_env = {"DATABASE_URL": env["FEEDBACK_DATABASE_URL"], "HOST": "127.0.0.1", "PORT": str(ports.feedback_ui)}
    if lm == "llama":
        lm_service = Service(
            "llm",
            [str(BIN / "qa-core"), "lm", "serve"],
            f"http://127.0.0.1:{ports.lm}/props?model=smollm2-135m-instruct",  # answers once the model is loaded
            env={"LM_SERVER_HOST": "127.0.0.1", "LM_SERVER_PORT": str(ports.lm)},
        )
    else:
        lm_service = Service(
            "lm-simulator",
            [str(BIN / "lm-simulator"), "--port", str(ports.lm), "--latency-ms", "200"],
            f"http://127.0.0.1:{ports.lm}/health",
        )
    return [
        Service(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{state}/mlflow.db",
                "--serve-artifacts",
                "--artifacts-destination",
                str(state / "mlartifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.mlflow),
                "--workers",
                "1",
            ],
            f"http://127.0.0.1:{ports.mlflow}/api/2.0/mlflow/experiments/search?max_results=1",
        ),
        lm_service,
        Service("worker-migrate", [str(BIN / "optimizer-worker-migrate")], env=worker_env, one_shot=True),
        Service("feedback-migrate", [str(BIN / "feedback-ui-migrate")], env=feedback_env, one_shot=True),
        Service("bootstrap", [str(BIN / "optimizer-worker-bootstrap")], env=worker_env, one_shot=True),
        Service(
            "qa-api",
            [str(BIN / "qa-api")],
            f"http://127.0.0.1:{ports.qa_api}/health/ready",
            env={"HOST": "127.0.0.1", "PORT": str(ports.qa_api)},
        ),
        Service(
            "optimizer-worker-api",
            [str(BIN / "optimizer-worker-api")],
            f"http://127.0.0.1:{ports.worker_api}/health/ready",
            env=worker_env,
        ),
        Service("optimizer-worker", [str(BIN / "optimizer-worker"), "worker"], ready_text="ready.", env=worker_env),
        Service(
            "feedback-ui",
            [str(BIN / "feedback-ui")],
            f"http://127.0.0.1:{ports.feedback_ui}/health/ready",
            env=feedback_env,
        ),
    ]


# --8<-- [end:services]


def busy_ports(ports: Ports) -> list[str]:
    """The ports something already listens on: starting anyway would talk to someone else's server."""
    taken = []
    for name, port in vars(ports).items():
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(f"{name} {port}")
    return taken


class Supervisor:
    """Starts processes in their own process groups, tees their output with a name prefix, stops them all."""

    def __init__(self, state: Path, base_env: dict[str, str]) -> None:
        self.state, self.base_env = state, base_env
        self.running: list[tuple[Service, subprocess.Popen]] = []
        self.lock = threading.Lock()
        (state / "logs").mkdir(parents=True, exist_ok=True)

    def _pump(self, name: str, stream: IO[str], log: IO[str]) -> None:
        for line in stream:
            log.write(line)
            log.flush()
            with self.lock:
                sys.stdout.write(f"{name:>20} | {line}")
                sys.stdout.flush()

    def start(self, service: Service) -> None:
        log = (self.state / "logs" / f"{service.name}.log").open("a")
        proc = subprocess.Popen(
            service.args,
            cwd=ROOT,
            env={**os.environ, **self.base_env, **service.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(service.name, proc.stdout, log), daemon=True).start()
        self.running.append((service, proc))
        self.wait_ready(service, proc)

    def wait_ready(self, service: Service, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + service.timeout_s
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        log_path = self.state / "logs" / f"{service.name}.log"
        while True:
            code = proc.poll()
            if service.one_shot and code is not None:
                if code != 0:
                    raise RuntimeError(f"{service.name} failed with exit code {code} (log: {log_path})")
                self.running.remove((service, proc))
                return
            if code is not None:
                raise RuntimeError(f"{service.name} exited with {code} before it was ready (log: {log_path})")
            if service.health:
                with contextlib.suppress(urllib.error.URLError, OSError), opener.open(service.health, timeout=2) as r:
                    if 200 <= r.status < 300:
                        return
            elif service.ready_text and service.ready_text in log_path.read_text(errors="replace"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} was not ready within {service.timeout_s:.0f} s (log: {log_path})")
            time.sleep(0.25)

    # --8<-- [start:stop]
    def stop_all(self, grace_s: float = 20.0) -> None:
        """SIGTERM to every process group, newest first; SIGKILL whatever is left after the grace period."""
        for _, proc in reversed(self.running):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for service, proc in reversed(self.running):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{service.name} did not stop within {grace_s:.0f} s; killing it", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # Children of the group (uvicorn or Celery workers) that outlived their parent.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.running.clear()

    # --8<-- [end:stop]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", choices=["llama", "simulator"], default="llama", help="the LM server to start")
    parser.add_argument("--state", type=Path, default=ROOT / ".state" / "dev", help="SQLite files, artifacts, logs")
    args = parser.parse_args(argv)

    state = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    ports = Ports()
    env = stack_env(state, ports, args.lm)
    if taken := busy_ports(ports):
        print(f"already in use: {', '.join(taken)}; stop that, or choose other ports (see --help)", file=sys.stderr)
        return 2
    supervisor = Supervisor(state, env)

    def _terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    try:
        for service in services(state, ports, args.lm, env):
            print(f"starting {service.name} ...", flush=True)
            supervisor.start(service)
        # --8<-- [start:urls]
        print(
            f"\nThe stack is up ({time.monotonic() - started:.0f} s). Ctrl-C stops everything.\n"
            f"  feedback-ui           http://127.0.0.1:{ports.feedback_ui}   (admin/admin, annotator/annotator)\n"
            f"  qa-api                http://127.0.0.1:{ports.qa_api}/docs\n"
            f"  optimizer-worker API  http://127.0.0.1:{ports.worker_api}/docs\n"
            f"  MLflow                http://127.0.0.1:{ports.mlflow}\n"
            f"  LM ({args.lm:9})       http://127.0.0.1:{ports.lm}/v1\n"
            f"  state and logs        {state}\n",
            flush=True,
        )
        # --8<-- [end:urls]
        while True:
            for service, proc in supervisor.running:
                if proc.poll() is not None:
                    raise RuntimeError(f"{service.name} exited with {proc.returncode}; stopping the stack")
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except RuntimeError as error:
        print(f"\n{error}", file=sys.stderr, flush=True)
        return 1
    finally:
        supervisor.stop_all()
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
