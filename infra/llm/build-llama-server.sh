#!/bin/sh
# Build llama.cpp's `llama-server` from the llama.cpp tree vendored in the pinned llama-cpp-python sdist.
#
#   build-llama-server.sh REQUIREMENTS DEST
#
# REQUIREMENTS pins that sdist with its hash (requirements/llama-server.txt), so the source is checked
# before it is built; DEST is where the binary goes. The patches beside this script make llama-server
# decode as llama-cpp-python's server did, which the program was designed with (each says why). One static binary: the image that serves the
# model copies it alone, and no other image needs a compiler or the source.
set -eu
requirements=$1
dest=$2
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: --require-hashes \
  -r "$requirements" -d "$work"
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
source_dir=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
for patch in "$(dirname "$0")"/patches/*.patch; do
  patch --quiet --forward -p1 -d "$source_dir" <"$patch"
done
generator=$(command -v ninja >/dev/null && echo "-G Ninja" || echo "")
# GGML_NATIVE=OFF: a portable x86-64 baseline (AVX2), so the binary runs wherever the image runs. A native
# build picks CPU paths (AMX) that a VM may advertise but cannot run.
cmake -S "$source_dir" -B "$work/build" ${generator} -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >"$work/configure.log" \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" --target llama-server
install -D -m 0755 "$work/build/bin/llama-server" "$dest"
"$dest" --version
