#!/usr/bin/env bash
# Installs what the tests need (once) and runs the default (fast, offline) test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${SOEBENCH_VENV:-.venv}/bin/activate"
export FIFTYONE_DATABASE_VALIDATION=false FIFTYONE_DO_NOT_TRACK=true
exec python -m pytest "$@"
