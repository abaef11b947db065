"""Polling for a condition in async tests: the one place that decides how long "eventually" is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[object]], timeout_s: float = 30.0, interval_s: float = 0.1) -> None:
    """Wait until `await check()` is truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(interval_s)
