"""Injected faults and latency, drawn from one seeded RNG so a run can be repeated."""

from __future__ import annotations

import enum
import random

from lm_simulator.settings import SimulatorSettings


class Outcome(enum.Enum):
    OK = "ok"
    RATE_LIMITED = "429"
    SERVER_ERROR = "500"
    TIMEOUT = "timeout"


class Faults:
    def __init__(self, settings: SimulatorSettings) -> None:
        self._rng = random.Random(settings.seed)
        self._latency = settings.latency_ms / 1000.0
        self._jitter = settings.jitter_ms / 1000.0
        # Cumulative thresholds for a single uniform draw per request.
        self._t429 = settings.error_rate_429
        self._t500 = self._t429 + settings.error_rate_500
        self._ttimeout = self._t500 + settings.timeout_rate
        self._any = self._ttimeout > 0.0

    def outcome(self) -> Outcome:
        if not self._any:
            return Outcome.OK
        r = self._rng.random()
        if r < self._t429:
            return Outcome.RATE_LIMITED
        if r < self._t500:
            return Outcome.SERVER_ERROR
        if r < self._ttimeout:
            return Outcome.TIMEOUT
        return Outcome.OK

    def delay(self) -> float:
        """Seconds to wait before answering: latency +- uniform jitter, never negative."""
        if not self._jitter:
            return self._latency
        return max(0.0, self._latency + self._rng.uniform(-self._jitter, self._jitter))
