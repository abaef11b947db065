"""The process entry point every service's console script calls: logging, then uvicorn on the app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from starlette.types import ASGIApp

S = TypeVar("S")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# --8<-- [start:serve]
def serve(
    app_factory: Callable[[S], ASGIApp],
    settings: S,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    shutdown_grace_s: float | None = None,
) -> None:
    """Build the app from `settings` and serve it until SIGTERM; uvicorn then lets the requests in flight
    finish, for at most `shutdown_grace_s` (None: as long as they take).

    uvicorn's access log is off: requests are counted in the metrics, and failures are logged with their
    request id.
    """
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    uvicorn.run(
        app_factory(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=int(shutdown_grace_s) if shutdown_grace_s is not None else None,
    )


# --8<-- [end:serve]
