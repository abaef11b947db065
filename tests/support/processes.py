"""Start real servers as subprocesses for tests: ephemeral ports, logs in a file, always torn down."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import httpx

from qa_core.lm_server import MODEL_ALIAS

# Every process the tests start: no network calls for price maps, telemetry or OTLP export.
QUIET_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_OTLP_EXPORTER": "false",
    "DO_NOT_TRACK": "1",
    # MLflow 3.17's server starts seven job-runner processes (about 3 GB) for features we do not use.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(log: IO[str], lines: int = 40) -> str:
    log.seek(0)
    return "".join(log.readlines()[-lines:])


def wait_until_healthy(proc: subprocess.Popen, url: str, log: IO[str], timeout_s: float, name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before it was healthy:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} was not healthy at {url} within {timeout_s:.0f} s:\n{_tail(log)}")
        time.sleep(0.1)


def wait_until_logged(proc: subprocess.Popen, text: str, log: IO[str], timeout_s: float, name: str) -> None:
    """For a process without HTTP (a queue consumer): wait until its log shows `text`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready:\n{_tail(log)}")
        log.seek(0)
        if text in log.read():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not log {text!r} within {timeout_s:.0f} s:\n{_tail(log)}")
        time.sleep(0.2)


class ManagedProcess:
    """A started server: its process, its log, and a way to stop and start it again on the same port."""

    def __init__(
        self, args: list[str], health_url: str, env: dict[str, str], timeout_s: float, name: str, ready_text: str = ""
    ):
        self.args, self.health_url, self.env, self.timeout_s, self.name = args, health_url, env, timeout_s, name
        self.ready_text = ready_text  # for processes without HTTP: a line in the log that says "ready"
        # Log to a file, not a pipe: an unread pipe that fills up would block the server.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by running()
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args, stdout=self.log, stderr=subprocess.STDOUT, text=True, env=self.env, start_new_session=True
        )
        if self.health_url:
            wait_until_healthy(self.proc, self.health_url, self.log, self.timeout_s, self.name)
        else:
            wait_until_logged(self.proc, self.ready_text, self.log, self.timeout_s, self.name)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # the whole group: servers like gunicorn fork workers
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def logs(self) -> str:
        return _tail(self.log, 200)


@contextlib.contextmanager
def running(
    args: list[str],
    health_url: str,
    *,
    env: dict[str, str] | None = None,
    timeout_s: float = 60,
    name: str = "",
    ready_text: str = "",
) -> Iterator[ManagedProcess]:
    """Run a server until the block ends; fail with its log if it does not become healthy.

    Without a `health_url`, the process is ready once its log contains `ready_text`.
    """
    process = ManagedProcess(
        args,
        health_url,
        {**os.environ, **QUIET_ENV, **(env or {})},
        timeout_s,
        name or os.path.basename(args[0]),
        ready_text,
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()
        process.log.close()


@contextlib.contextmanager
def lm_simulator(**options: object) -> Iterator[str]:
    """An LM simulator process with the given options as flags; yields its base URL (with /v1)."""
    port = free_port()
    args = [sys.executable, "-m", "lm_simulator", "--port", str(port)]
    for key, value in {"latency_ms": 0, "tokens_per_second": 0, **options}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    with running(args, f"http://127.0.0.1:{port}/health", timeout_s=20, name="lm-simulator"):
        yield f"http://127.0.0.1:{port}/v1"


@contextlib.contextmanager
def llama_server(**settings: str) -> Iterator[str]:
    """The real local LM: `qa-core lm serve` with the bundled SmolLM2 file; yields its base URL.

    `settings` are extra environment variables, e.g. `LM_SERVER_ADAPTERS_DIR`.
    """
    port = free_port()
    args = [sys.executable, "-m", "qa_core.cli", "lm", "serve"]
    env = {**settings, "LM_SERVER_PORT": str(port)}
    ready = f"http://127.0.0.1:{port}/props?model={MODEL_ALIAS}"  # answers once the base model is loaded
    with running(args, ready, env=env, timeout_s=120, name="llama.cpp server"):
        yield f"http://127.0.0.1:{port}/v1"


@contextlib.contextmanager
def mlflow_server(root: str) -> Iterator[ManagedProcess]:
    """A real `mlflow server` process with a SQLite backend and served artifacts under `root`."""
    port = free_port()
    args = [
        os.path.join(os.path.dirname(sys.executable), "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        f"{root}/artifacts",
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with running(args, f"http://127.0.0.1:{port}/health", timeout_s=120, name="mlflow server") as process:
        process.url = f"http://127.0.0.1:{port}"
        yield process


@contextlib.contextmanager
def qa_api(env: dict[str, str]) -> Iterator[ManagedProcess]:
    """qa-api as a real process (`qa-api` console script); `.url` is its base URL. `env` sets its settings."""
    port = free_port()
    args = [os.path.join(os.path.dirname(sys.executable), "qa-api")]
    settings = {"PORT": str(port), "HOST": "127.0.0.1", **env}
    with running(args, f"http://127.0.0.1:{port}/health/ready", env=settings, timeout_s=90, name="qa-api") as process:
        process.url = f"http://127.0.0.1:{port}"
        yield process


@contextlib.contextmanager
def feedback_ui(env: dict[str, str]) -> Iterator[ManagedProcess]:
    """feedback-ui as a real process (`feedback-ui`, migrated first); `.url` is its base URL."""
    port = free_port()
    bin_dir = os.path.dirname(sys.executable)
    settings = {"PORT": str(port), "HOST": "127.0.0.1", **env}
    subprocess.run(
        [os.path.join(bin_dir, "feedback-ui-migrate")],
        env={**os.environ, **QUIET_ENV, **settings},
        check=True,
        capture_output=True,
        timeout=120,
    )
    args = [os.path.join(bin_dir, "feedback-ui")]
    health = f"http://127.0.0.1:{port}/health/ready"
    with running(args, health, env=settings, timeout_s=90, name="feedback-ui") as process:
        process.url = f"http://127.0.0.1:{port}"
        yield process


@contextlib.contextmanager
def optimizer_worker_api(env: dict[str, str]) -> Iterator[ManagedProcess]:
    """The optimizer-worker's jobs API as a real process (`optimizer-worker-api`, migrated first)."""
    port = free_port()
    bin_dir = os.path.dirname(sys.executable)
    settings = {"API_PORT": str(port), "API_HOST": "127.0.0.1", **env}
    subprocess.run(
        [os.path.join(bin_dir, "optimizer-worker-migrate")],
        env={**os.environ, **QUIET_ENV, **settings},
        check=True,
        capture_output=True,
        timeout=120,
    )
    args = [os.path.join(bin_dir, "optimizer-worker-api")]
    with running(args, f"http://127.0.0.1:{port}/health/live", env=settings, timeout_s=90, name="jobs API") as process:
        process.url = f"http://127.0.0.1:{port}"
        yield process


@contextlib.contextmanager
def optimizer_worker(env: dict[str, str]) -> Iterator[ManagedProcess]:
    """An `optimizer-worker worker` queue consumer as a real process; ready when it logs "ready."."""
    args = [os.path.join(os.path.dirname(sys.executable), "optimizer-worker"), "worker"]
    with running(args, "", env=env, timeout_s=120, name="optimizer-worker", ready_text="ready.") as process:
        yield process


@contextlib.contextmanager
def together(*managers: contextlib.AbstractContextManager) -> Iterator[list]:
    """Enter independent context managers (servers) at once, each in a thread; exit all of them at the end.

    Servers spend their start-up importing and waiting; starting them side by side saves most of it.
    """
    from concurrent.futures import ThreadPoolExecutor

    with contextlib.ExitStack() as stack:
        with ThreadPoolExecutor(len(managers)) as pool:
            futures = [pool.submit(manager.__enter__) for manager in managers]
        values, failure = [], None
        for manager, future in zip(managers, futures, strict=True):
            try:
                values.append(future.result())
                stack.push(manager.__exit__)  # only what started is stopped
            except BaseException as error:  # the others still get stopped by the stack, then this is raised
                failure = failure or error
        if failure is not None:
            raise failure
        yield values
