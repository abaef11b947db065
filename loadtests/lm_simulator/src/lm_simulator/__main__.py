"""Command line: flags mirror SimulatorSettings (env vars LM_SIM_* fill in whatever a flag leaves out)."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from typing import Any

import uvicorn

from lm_simulator.app import create_app
from lm_simulator.settings import SimulatorSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lm-simulator",
        description="OpenAI-compatible LM simulator for load tests. Every flag also reads env LM_SIM_<NAME>.",
    )
    for name, info in SimulatorSettings.model_fields.items():
        kind = info.annotation if info.annotation in (int, float) else str
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            default=None,  # None = not given, so env and defaults still apply
            metavar=name.upper(),
            help=f"{info.description} (default: {info.default})",
        )
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> SimulatorSettings:
    args = vars(build_parser().parse_args(argv))
    given: dict[str, Any] = {k: v for k, v in args.items() if v is not None}
    return SimulatorSettings(**given)


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    fast = importlib.util.find_spec("uvloop") is not None
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") is not None else "h11",
        access_log=False,
        log_level=settings.log_level,
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
