"""Polling for a condition: the one place that decides how long "eventually" is, in async and sync tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(check: Callable[[], Awaitable[object]], timeout_s: float = 30.0, interval_s: float = 0.1) -> None:
    """Wait until `await check()` is truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(interval_s)


def wait_until(
    check: Callable[[], Any],
    timeout_s: float = 60,
    what: str = "condition",
    interval_s: float = 0.2,
    detail: Callable[[], str] = lambda: "",
) -> Any:
    """Poll `check()` until it returns something truthy, and return that; fail with `what` and `detail()`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s (last value: {value!r}){detail()}")
        time.sleep(interval_s)
