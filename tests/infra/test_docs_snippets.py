"""The monitoring part (docs/parts/monitoring.md) is included by module 15's chapter; `mkdocs build --strict`
checks its snippets only once that chapter includes it, so this checks them directly: every quoted file and
named section exists."""

from __future__ import annotations

import re

import pytest

from tests.infra.tools import ROOT

PART = ROOT / "docs/parts/monitoring.md"
SNIPPETS = re.findall(r'^--8<-- "([^"]+)"$', PART.read_text(), re.M)


def test_the_part_quotes_the_real_config_files() -> None:
    quoted = {s.split(":")[0] for s in SNIPPETS}
    assert {"infra/prometheus/prometheus.yml", "infra/prometheus/alerts.yml", "infra/otel/collector.yaml",
            "infra/grafana/provisioning/datasources/prometheus.yml"} <= quoted  # fmt: skip


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_every_snippet_resolves(snippet: str) -> None:
    path, _, section = snippet.partition(":")
    text = (ROOT / path).read_text()
    if section:
        assert f"--8<-- [start:{section}]" in text, snippet
        assert f"--8<-- [end:{section}]" in text, snippet
