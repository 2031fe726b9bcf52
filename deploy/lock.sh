#!/usr/bin/env bash
# Regenerates the container image's lock files from pyproject.toml, every dependency
# (transitive ones too) pinned with its hashes:
#   deploy/requirements.txt        what `pip install --require-hashes` puts in the runtime venv
#   deploy/requirements-build.txt  the build backend ([build-system] requires) for the wheel
# Run after changing a pin in pyproject.toml; tests/deploy/test_image.py fails until the
# locks agree with it. Needs uv (PyPI `uv`, any 0.13.x).
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-uv}"
common=(--quiet --universal --python-version 3.11 --generate-hashes --no-header)
"$uv" pip compile "${common[@]}" pyproject.toml -o deploy/requirements.txt
python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
  | "$uv" pip compile "${common[@]}" - -o deploy/requirements-build.txt
