#!/usr/bin/env bash
# Installs what it needs (once), then runs the main job on the embedded sample: builds a
# small-object manifest from real photographs that ship with scikit-image (our own COCO-format
# annotations), evaluates two weight-free inpainters on it and compares them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${SOEBENCH_VENV:-.venv}/bin/activate"
export FIFTYONE_DATABASE_VALIDATION=false FIFTYONE_DO_NOT_TRACK=true HF_HUB_OFFLINE=1
OUT=${DEMO_OUT:-.}
eval "$(python -c 'from soebench.sample import sample_paths as s; p = s(); print(f"ANN={p.annotations!s} CAP={p.captions!s} IMG={p.images!s}")')"
soebench build-dataset --source coco --annotations "$ANN" --captions "$CAP" --images "$IMG" \
  --split sample --preset soebench --out "$OUT/manifests/sample-soebench.parquet" --overwrite
soebench manifest info "$OUT/manifests/sample-soebench.parquet"
for model in original opencv-telea; do
  soebench evaluate --manifest "$OUT/manifests/sample-soebench.parquet" --model "$model" \
    --prompt color_label --out "$OUT/reports/demo-$model" --overwrite
done
soebench compare "$OUT/reports/demo-original" "$OUT/reports/demo-opencv-telea"
echo "Open $OUT/reports/demo-opencv-telea/report.html for plots and the worst samples."
