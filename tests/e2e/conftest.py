"""The compose end-to-end test runs only through `make test-compose` (COMPOSE_E2E=1), never in `make test`:
it builds every image and starts the whole stack, which takes many minutes."""

import os

if not os.environ.get("COMPOSE_E2E"):
    collect_ignore_glob = ["test_*.py"]
