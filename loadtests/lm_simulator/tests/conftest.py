"""Fixtures: the simulator as a real subprocess on an ephemeral port (see tests/support/processes.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from tests.support.processes import lm_simulator


@pytest.fixture(scope="session")
def api_base(simulator_base: str) -> str:
    """A shared simulator with no latency, no pacing and no faults."""
    return simulator_base


@pytest.fixture
def simulator() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """Start a dedicated simulator with other options: `with simulator(error_rate_429=1.0) as base: ...`."""
    return lm_simulator
