"""Paths of the deployment tools that `make setup-infra` installs into .venv/bin, and a runner for them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The pinned tool in the virtualenv; fail (never skip) when it is missing: the check must run."""
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name) if name == "promtool" else None
    if found:
        return found
    pytest.fail(f"{name} is not installed: run `make setup-infra` (make test does)")


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]
