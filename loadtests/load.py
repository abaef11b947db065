"""`make load`: the three Locust user classes against qa-api backed by the LM simulator.

Starts the simulator (fixed latency) and qa-api (baseline program, no registry), runs Locust
headless, and writes its CSV and HTML reports under loadtests/results/. Options pass through:

    python loadtests/load.py --users 32 --duration 60 --latency-ms 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import processes  # noqa: E402

RESULTS = ROOT / "loadtests" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--latency-ms", type=int, default=200)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = RESULTS / f"load-{time.strftime('%Y%m%d-%H%M%S')}"
    with processes.lm_simulator(latency_ms=args.latency_ms, tokens_per_second=100) as lm:
        env = {
            "LM_MODEL": "llamacpp/lm-simulator",
            "LM_API_BASE": lm,
            "LM_API_KEY": "sim",
            "USE_REGISTRY": "false",
            "MAX_INFLIGHT": "512",
        }
        with processes.qa_api(env) as api:
            subprocess.run(
                [
                    str(Path(sys.executable).parent / "locust"),
                    "-f",
                    str(ROOT / "loadtests/locustfile.py"),
                    "--headless",
                    "-u",
                    str(args.users),
                    "-r",
                    str(args.users),
                    "-t",
                    f"{args.duration}s",
                    "--host",
                    api.url,
                    "--csv",
                    str(prefix),
                    "--html",
                    f"{prefix}.html",
                ],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                check=True,
            )
    print(f"reports: {prefix}_stats.csv, {prefix}.html")


if __name__ == "__main__":
    main()
