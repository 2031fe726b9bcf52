#!/usr/bin/env sh
# How the container image installs ticketgate (the Dockerfile runs this; so does
# tests/deploy/test_image.py, which then serves from the result):
#   1. a throwaway build venv gets the build backend from deploy/requirements-build.txt
#      (hashes required) and builds the project's wheel, generating the protobuf modules;
#   2. the runtime venv, made without pip or setuptools, gets every dependency from
#      deploy/requirements.txt (hashes required, wheels only: no compiler needed) and the
#      wheel without its dependencies, so nothing unpinned or unhashed gets in.
# Usage: install.sh SOURCE_DIR BUILD_VENV RUNTIME_VENV
set -eu
python="${PYTHON:-python3}"
src="$1"
build="$2"
runtime="$3"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR="${PIP_NO_CACHE_DIR:-1}"

"$python" -m venv "$build"
"$build/bin/pip" install --quiet --require-hashes --no-deps --only-binary=:all: \
  -r "$src/deploy/requirements-build.txt"
# protoc finds the mypy stub plugin (protoc-gen-mypy) on PATH.
PATH="$build/bin:$PATH" "$build/bin/pip" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$build/wheels" "$src"

"$python" -m venv --without-pip "$runtime"
"$build/bin/pip" --python "$runtime/bin/python" install --quiet --require-hashes --no-deps \
  --only-binary=:all: -r "$src/deploy/requirements.txt"
"$build/bin/pip" --python "$runtime/bin/python" install --quiet --no-deps --no-index \
  "$build"/wheels/ticketgate-*.whl
