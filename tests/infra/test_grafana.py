"""Grafana: the provisioned dashboards are valid, and every metric they (and the alert rules) query is one the
services really expose. The names come from the services' own metric registries, rendered by the same
`generate_latest` their /metrics routes return, never from a hand-kept list."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

from tests.infra.tools import ROOT

DASHBOARDS = sorted((ROOT / "infra/grafana/dashboards").glob("*.json"))
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan", "le"}  # fmt: skip
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def exposition_names(text: str) -> set[str]:
    """Every sample name a /metrics body can contain, from its `# TYPE` lines (present even with no samples yet)."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """What qa-api, feedback-ui and the optimizer-worker's jobs API put on /metrics."""
    import feedback_ui.metrics  # noqa: F401 - registers on the default registry, as in the service
    import qa_api.metrics  # noqa: F401
    from optimizer_worker.db import migrate
    from optimizer_worker.jobs import JobStore
    from optimizer_worker.metrics import ApiMetrics

    default = exposition_names(generate_latest(REGISTRY).decode())
    url = f"sqlite:///{tmp_path_factory.mktemp('jobs')}/jobs.db"
    migrate(url)
    worker = exposition_names(generate_latest(ApiMetrics(JobStore(url)).registry).decode())
    return {
        "qa-api": {n for n in default if n.startswith("qa_")},
        "feedback-ui": {n for n in default if n.startswith("feedback_")},
        "optimizer-worker": worker,
    }


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, ranges, grouping clauses and functions removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        if match.group(2) is None and match.group(1) not in PROMQL_WORDS:
            names.add(match.group(1))
    return names


def recorded_names() -> set[str]:
    rules = yaml.safe_load((ROOT / "infra/prometheus/alerts.yml").read_text())
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}


def dashboard_exprs(path: Path) -> list[str]:
    dashboard = json.loads(path.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_name_parser_finds_metrics_and_skips_functions_and_labels() -> None:
    expr = 'histogram_quantile(0.95, sum by (variant, le) (rate(qa_request_duration_seconds_bucket{synthetic="false"}[5m]))) / on(variant) group_left x:y'  # noqa: E501
    assert metric_names(expr) == {"qa_request_duration_seconds_bucket", "x:y"}


def test_services_expose_the_metrics_the_brief_names(exposed: dict[str, set[str]]) -> None:
    assert {"qa_requests_total", "qa_request_duration_seconds_bucket", "qa_lm_tokens_total", "qa_errors_total",
            "qa_program_version_info", "qa_challenger_share"} <= exposed["qa-api"]  # fmt: skip
    assert "feedback_ratings_total" in exposed["feedback-ui"]
    assert "optimizer_job_duration_seconds_bucket" in exposed["optimizer-worker"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_and_reads_only_exposed_metrics(path: Path, exposed: dict[str, set[str]]) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard["panels"]
    datasource = yaml.safe_load((ROOT / "infra/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    all_exposed = set().union(*exposed.values()) | PROMETHEUS_OWN | recorded_names()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= all_exposed, (panel["title"], names - all_exposed)


def test_dashboards_cover_what_the_issue_asks(exposed: dict[str, set[str]]) -> None:
    read = set().union(*(metric_names(e) for path in DASHBOARDS for e in dashboard_exprs(path)))
    for needed in ("qa_requests_total", "qa_request_duration_seconds_bucket", "qa_errors_total",
                   "qa_lm_call_duration_seconds_bucket", "qa_lm_tokens_total", "feedback_ratings_total",
                   "optimizer_job_duration_seconds_bucket"):  # fmt: skip
        assert needed in read, needed


def test_alert_rules_read_only_exposed_metrics(exposed: dict[str, set[str]]) -> None:
    rules = yaml.safe_load((ROOT / "infra/prometheus/alerts.yml").read_text())
    known = set().union(*exposed.values()) | PROMETHEUS_OWN | recorded_names()
    for group in rules["groups"]:
        for rule in group["rules"]:
            names = metric_names(rule["expr"])
            assert names, rule  # a rule the parser reads as metric-free would pass vacuously
            assert names <= known, (rule.get("alert") or rule.get("record"), names - known)
