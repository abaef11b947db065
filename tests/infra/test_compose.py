"""docker-compose.yml: it renders for every profile, and the rendered stack keeps the production habits."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.infra.tools import ROOT, run, tool

VARIANTS = {
    "default": [],
    "loadtest": ["--profile", "loadtest"],
    "tracing": ["-f", "docker-compose.yml", "-f", "infra/compose/tracing.yml", "--profile", "tracing"],
    "all": [
        "-f",
        "docker-compose.yml",
        "-f",
        "infra/compose/tracing.yml",
        "--profile",
        "tracing",
        "--profile",
        "loadtest",
    ],
}
PROD_SECRETS = {"LM_API_KEY": "k" * 20, "SESSION_SECRET": "s" * 40, "USERS": "[]"}
# The compose project's settings alone: the shell running the tests must not leak into the rendering.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
for key in ("APP_ENV", "LM_API_KEY", "SESSION_SECRET", "USERS", "PROMOTION_MARGIN", "LM_API_BASE", "LM_MODEL"):
    CLEAN_ENV.pop(key, None)


def compose_config(args: list[str], env: dict[str, str] | None = None) -> dict:
    result = run([tool("docker-compose"), *args, "config", "--format", "json"], env={**CLEAN_ENV, **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def stack(request: pytest.FixtureRequest) -> dict:
    return compose_config(VARIANTS[request.param])


def is_one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def test_every_profile_renders_with_only_the_committed_env(stack: dict) -> None:
    expected = {"postgres", "redis", "mlflow", "llm", "qa-api", "optimizer-worker-api", "optimizer-worker",
                "feedback-ui", "prometheus", "grafana", "bootstrap", "worker-migrate", "feedback-migrate"}  # fmt: skip
    assert expected <= set(stack["services"])


def test_profiles_add_tracing_and_locust() -> None:
    assert "locust" not in compose_config([])["services"]
    assert {"locust", "lm-simulator"} <= set(compose_config(VARIANTS["loadtest"])["services"])
    traced = compose_config(VARIANTS["tracing"])
    assert {"otel-collector", "jaeger"} <= set(traced["services"])
    qa_env = traced["services"]["qa-api"]["environment"]
    # qa-api speaks OTLP over HTTP: the collector's 4318, never the gRPC port.
    assert qa_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert qa_env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert qa_env["MLFLOW_ENABLE_OTLP_EXPORTER"] == "false"  # MLflow's traces stay in MLflow
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in compose_config([])["services"]["qa-api"]["environment"]


def test_every_service_has_a_real_healthcheck_and_dependants_wait_for_it(stack: dict) -> None:
    services = stack["services"]
    for name, service in services.items():
        if is_one_shot(service):
            continue
        check = service.get("healthcheck", {})
        assert not check.get("disable"), name
        test = " ".join(check.get("test", []))
        # An HTTP call to the service's own endpoint, a database query, or a broker round trip; never "true".
        assert re.search(r"healthcheck http|wget .*http|psql .*select|redis-cli ping|inspect ping", test), (name, test)
        for dependency, condition in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if is_one_shot(services[dependency]) else "service_healthy"
            assert condition["condition"] == wanted, (name, dependency)


def test_memory_limits_log_rotation_and_pinned_images(stack: dict) -> None:
    for name, service in stack["services"].items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("memory") or is_one_shot(service), name
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert logging["options"]["max-size"] == "10m", name
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1], (name, image)
        assert not image.endswith(":latest"), (name, image)


def test_secrets_fail_fast_and_prod_has_no_dev_defaults() -> None:
    missing = run([tool("docker-compose"), "-f", "docker-compose.yml", "-f", "infra/compose/production.yml", "config"],
                  env=CLEAN_ENV)  # fmt: skip
    assert missing.returncode != 0
    # Compose stops at the first missing secret; which one it meets first depends on the file's layout.
    assert re.search(r"(LM_API_KEY|SESSION_SECRET|\w+_PASSWORD) is required with APP_ENV=prod", missing.stderr)
    prod = compose_config(["-f", "docker-compose.yml", "-f", "infra/compose/production.yml"], env=PROD_SECRETS)
    ui = prod["services"]["feedback-ui"]["environment"]
    assert ui["APP_ENV"] == "prod"
    assert ui["SESSION_SECRET"] == PROD_SECRETS["SESSION_SECRET"]
    # Without .env, the database passwords are missing: compose names one instead of starting without it.
    blank = run([tool("docker-compose"), "--env-file", "/dev/null", "config"], env=CLEAN_ENV)
    assert blank.returncode != 0
    assert re.search(r"required variable \w+_PASSWORD is missing a value", blank.stderr), blank.stderr


def test_published_ports_are_the_documented_ones() -> None:
    stack = compose_config(VARIANTS["all"])
    published = {
        name: {int(port["published"]) for port in service.get("ports", [])}
        for name, service in stack["services"].items()
    }
    assert published["feedback-ui"] == {8002}
    assert published["qa-api"] == {8000}
    assert published["optimizer-worker-api"] == {8001}
    assert published["mlflow"] == {5000}
    assert published["grafana"] == {3000}
    assert published["prometheus"] == {9090}
    assert published["locust"] == {8089}
    assert not published["postgres"]
    assert not published["redis"]
    assert not published["llm"]
    readme = (ROOT / "README.md").read_text()
    for port in (8002, 8000, 8001, 5000, 3000, 9090, 8089):
        assert f"http://localhost:{port}" in readme, port


DOCKERFILES = sorted(
    [*ROOT.glob("services/*/Dockerfile"), ROOT / "infra/mlflow/Dockerfile", ROOT / "infra/llm/Dockerfile",
     ROOT / "infra/loadtest/Dockerfile"]
)  # fmt: skip


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_are_multi_stage_locked_and_non_root(path: Path) -> None:
    text = path.read_text().replace("\\\n", " ")  # continuation lines joined
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) >= 2, stages
    assert all(s.startswith("${PYTHON_IMAGE}") for s in stages), stages
    assert "pip install --require-hashes -r requirements/bootstrap.txt" in text  # uv comes from pip, hashed
    assert re.search(r"uv pip install --require-hashes .*-r \S+\.txt", text)
    assert "COPY --from=builder /opt/venv /opt/venv" in text  # the final stage takes the virtualenv, nothing else
    final = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001:10001$", final, re.M), "the final stage runs as a non-root user"
    assert "build-essential" not in final
    assert "uv pip" not in final
    # Commands copied into the image (healthcheck, start scripts) must be executable whatever mode git
    # checked them out with; a healthcheck that cannot exec leaves its service unhealthy forever.
    commands = re.findall(r"^COPY (.*) /usr/local/bin/\S+$", final, re.M)
    assert all(c.startswith("--chmod=0755 ") for c in commands), commands


def test_services_in_compose_are_built_from_these_dockerfiles() -> None:
    stack = compose_config(VARIANTS["all"])
    built = {service["build"]["dockerfile"] for service in stack["services"].values() if "build" in service}
    expected = {str(p.relative_to(ROOT)) for p in DOCKERFILES} | {"infra/otel/Dockerfile.probe"}
    assert built == expected
