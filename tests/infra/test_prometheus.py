"""Prometheus: the config and the alert rules pass promtool, and the rules' unit tests pass."""

from __future__ import annotations

from pathlib import Path

from tests.infra.tools import ROOT, run, tool

PROMETHEUS = ROOT / "infra/prometheus"


def test_promtool_check_config(tmp_path: Path) -> None:
    # The config names the rules file where compose mounts it; point it at the repository's copy.
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/alerts.yml", str(PROMETHEUS / "alerts.yml"))
    )
    result = run([tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_check_rules() -> None:
    result = run([tool("promtool"), "check", "rules", str(PROMETHEUS / "alerts.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = (PROMETHEUS / "alerts.yml").read_text().replace("> 0.05", "> > 0.05", 1)
    (tmp_path / "alerts.yml").write_text(broken)
    assert run([tool("promtool"), "check", "rules", str(tmp_path / "alerts.yml")]).returncode != 0


def test_alert_rules_unit_tests() -> None:
    """The challenger alert fires on a worse challenger with enough ratings, and only then; error rate, latency
    and LM alerts fire on synthetic series (infra/prometheus/alerts_test.yml)."""
    result = run([tool("promtool"), "test", "rules", str(PROMETHEUS / "alerts_test.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
