"""Every chapter quotes real code through pymdownx.snippets. `mkdocs build --strict` checks a directive only
when it is well formed and on a page that is built, so this checks every docs file directly: each directive
is well formed, and every quoted file and named section exists. A directive that a formatter rewrote (ruff
0.16+ formats Python blocks in Markdown, turning `--8<--` into `--8 < --`) would silently render as text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.tools import ROOT

PAGES = sorted((ROOT / "docs").rglob("*.md"))
DIRECTIVE = re.compile(r'^--8<-- "([^"]+)"$')
LOOKS_LIKE_A_DIRECTIVE = re.compile(r"^\s*-\s*-\s*8\s*<")


def directives(page: Path) -> list[str]:
    return [m.group(1) for line in page.read_text().splitlines() if (m := DIRECTIVE.match(line))]


SNIPPETS = sorted({(page.relative_to(ROOT).as_posix(), s) for page in PAGES for s in directives(page)})


def test_the_monitoring_part_quotes_the_real_config_files() -> None:
    quoted = {s.split(":")[0] for page, s in SNIPPETS if page == "docs/parts/monitoring.md"}
    assert {"infra/prometheus/prometheus.yml", "infra/prometheus/alerts.yml", "infra/otel/collector.yaml",
            "infra/grafana/provisioning/datasources/prometheus.yml"} <= quoted  # fmt: skip


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_directive_is_well_formed(page: Path) -> None:
    bad = [line for line in page.read_text().splitlines() if LOOKS_LIKE_A_DIRECTIVE.match(line)]
    bad = [line for line in bad if not DIRECTIVE.match(line)]
    assert not bad, f"{page.name}: malformed snippet directives {bad}"


@pytest.mark.parametrize(("page", "snippet"), SNIPPETS)
def test_every_snippet_resolves(page: str, snippet: str) -> None:
    path, _, section = snippet.partition(":")
    assert (ROOT / path).is_file(), f"{page} quotes missing file {path}"
    text = (ROOT / path).read_text()
    if section:
        assert f"--8<-- [start:{section}]" in text, f"{page}: no section start in {snippet}"
        assert f"--8<-- [end:{section}]" in text, f"{page}: no section end in {snippet}"
