#!/bin/sh
# Install cognito-batch into a virtual environment from the lock, exactly as the image does.
#
#   docker/install.sh VENV [LOCK]
#
# VENV is created when missing (with the python3 on PATH, or $PYTHON). LOCK defaults to
# requirements/lock.txt (runtime + the emulator extra, hashes for Python 3.11 on Linux x86_64).
# The Dockerfile runs this script; .ci/run runs it too, in a clean venv, then runs
# `cognito-batch --version` and a dry run from it, so what the image installs is tested even
# where no image can be built.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:?usage: docker/install.sh VENV [LOCK]}
lock=${2:-$root/requirements/lock.txt}
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Every dependency at its locked version, checked against its hash.
"$venv/bin/python" -m pip install --quiet --require-hashes --only-binary :all: -r "$lock"
# The package itself, without resolving anything more: the build backend (setuptools) is in the
# lock too, so nothing unpinned is fetched. Built from a copy so the source tree stays clean.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -R "$root/pyproject.toml" "$root/README.md" "$root/batch" "$build/"
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation "$build"
"$venv/bin/cognito-batch" --version
