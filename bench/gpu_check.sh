#!/usr/bin/env bash
# GPU check of nnUNetv2_predict_fast's speed (issue 27: toward <= 3 s per 100x512x512 MRI), optionally with stock
# nnUNetv2_predict beside it and the small network's training speed. Run from the repository root:
#
#   bash bench/gpu_check.sh                        # on a CUDA GPU; about 4-5 minutes on one H200
#   bash bench/gpu_check.sh --with-stock           # also stock nnUNetv2_predict and its export step (+3 minutes)
#   bash bench/gpu_check.sh --with-training        # also a short 3d_fullres training (+2 minutes)
#   bash bench/gpu_check.sh --wheels DIR           # install from wheels in DIR (no index) if needed
#   bash bench/gpu_check.sh --device cpu --quick   # the same steps, sized for a CPU
#
# 1. bench/inference_speed.py with the paper's small 3d_fullres network (random weights) on synthetic MRI-sized
#    volumes (100x512x512 at 6x0.8x0.8 mm; --quick: 24x96x96): one case end to end with every phase's time
#    (start-up, read, preprocess, network, export, write), the start-up alone, the per-case work around the network
#    before and now, and a folder of 10 such volumes in one call (seconds per case); GPU memory peak and area.
# 2. (--with-training) a short 3d_fullres training of nnUNetTrainerUDASmall at the paper's patch size (40x224x192)
#    on phantom data, reporting seconds per training iteration.
# Everything is written to a temporary folder (kept, its path is printed); nothing outside it is touched.
set -euo pipefail

DEVICE=cuda
QUICK=0
WHEELS=""
STOCK=(--no-stock)
TRAINING=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --with-stock) STOCK=(); shift ;;
    --with-training) TRAINING=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -f setup.py && -d nnunetv2_uda ]] || { echo "gpu_check.sh: run it from the repository root" >&2; exit 2; }

if ! python3 -c "import nnunetv2_uda, nnunetv2" 2>/dev/null; then
  echo "== installing the package"
  if [[ -n "$WHEELS" ]]; then
    python3 -m pip install -q --no-index --find-links "$WHEELS" -e .
  else
    python3 -m pip install -q -e .
  fi
fi
if [[ "$DEVICE" == cuda ]]; then
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA device')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
export nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$WORK/preprocessed" nnUNet_results="$WORK/results"
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
START=$SECONDS
echo "== working in $WORK"

if [[ $QUICK == 1 ]]; then
  SHAPE=(24 96 96); TRAIN_CASES=2; TRAIN_SHAPE="48 128 128"; TRAINER=nnUNetTrainerUDASmall_2epochs_2iters
  export nnUNet_n_proc_DA=0 nnUNet_def_n_proc=1
else
  SHAPE=(100 512 512); TRAIN_CASES=4; TRAIN_SHAPE="80 256 256"; TRAINER=nnUNetTrainerUDASmall_3epochs_25iters
  export nnUNet_n_proc_DA="${nnUNet_n_proc_DA:-8}"
fi

echo "== 1 inference benchmark ($DEVICE, volume ${SHAPE[*]}, a folder of 10)"
python3 bench/inference_speed.py --device "$DEVICE" --shape "${SHAPE[@]}" "${STOCK[@]}" --workdir "$WORK/bench" \
  --json "$WORK/bench.json" | tee "$WORK/bench.log" | sed -n '/=== inference speed/,$p'
python3 - "$WORK/bench.json" <<'EOF'
import json, sys

f = json.load(open(sys.argv[1]))
one, folder = f["fast_end_to_end"], f["folder"]
per_case = folder["wall_s"] / len(folder["cases"])
print(f"\n=== gpu_check: seconds per case, nnUNetv2_predict_fast ({f['device']})")
print(f"one case, one call:   {one['wall_s']:.2f} s end to end (start-up {one['startup_s']:.2f} s, network "
      f"{one['cases'][0]['network_s']:.2f} s)")
print(f"10 cases, one call:   {per_case:.2f} s per case end to end   [<= 3 s: {'met' if per_case <= 3 else 'not met'}]"
      f"; end to end / summed network {folder['wall_s'] / folder['network_sum_s']:.2f}")
if f["device"] == "cuda":
    print(f"GPU memory: one case peak {one['gpu_peak_mb']:.0f} MB, area {one['gpu_area_mb_s']:.0f} MB*s; "
          f"10 cases peak {folder['gpu_peak_mb']:.0f} MB")
EOF
if [[ $TRAINING == 0 ]]; then
  echo "== done in $((SECONDS - START)) s; logs and figures in $WORK"
  exit 0
fi

echo "== 2 short 3d_fullres training of $TRAINER ($TRAIN_CASES phantom cases, ${TRAIN_SHAPE// /x})"
python3 - "$nnUNet_raw/Dataset989_GpuCheck" "$TRAIN_CASES" $TRAIN_SHAPE <<'EOF'
import json, sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_uda.flare_labels import FLARE_LABELS

folder, cases, shape = Path(sys.argv[1]), int(sys.argv[2]), tuple(int(s) for s in sys.argv[3:6])
(folder / "imagesTr").mkdir(parents=True)
(folder / "labelsTr").mkdir()
organs = {"liver": ((0.1, -0.1, -0.4), (0.6, 0.4, 0.35)), "spleen": ((0.2, 0.1, 0.55), (0.4, 0.25, 0.2)),
          "right kidney": ((-0.3, 0.45, -0.45), (0.3, 0.18, 0.15)),
          "left kidney": ((-0.3, 0.45, 0.45), (0.3, 0.18, 0.15))}
grid = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
for case in range(cases):
    rng = np.random.default_rng(case)
    image = np.full(shape, -1000, np.float32)
    image[(grid[1] / 0.8) ** 2 + (grid[2] / 0.95) ** 2 < 1] = -80
    label = np.zeros(shape, np.uint8)
    for organ, (centre, radius) in organs.items():
        centre = np.array(centre) + rng.uniform(-0.05, 0.05, 3)
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius)) < 1
        label[inside] = FLARE_LABELS[organ]
        image[inside] = 60 + 30 * FLARE_LABELS[organ]
    image += rng.normal(0, 15, shape).astype(np.float32)
    for array, path in ((image, f"imagesTr/gpu_{case:03d}_0000.nii.gz"), (label, f"labelsTr/gpu_{case:03d}.nii.gz")):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing((0.81, 0.81, 2.5))
        sitk.WriteImage(itk, str(folder / path))
(folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": FLARE_LABELS,
                                                 "numTraining": cases, "file_ending": ".nii.gz"}))
EOF
nnUNetv2_plan_and_preprocess -d 989 -pl nnUNetPlannerUDASmall -c 3d_fullres -np 2 > "$WORK/plan.log" 2>&1 \
  || { tail -30 "$WORK/plan.log"; exit 1; }
TRAIN_START=$SECONDS
nnUNetv2_train 989 3d_fullres all -tr "$TRAINER" -p nnUNetPlansUDASmall -device "$DEVICE" > "$WORK/train.log" 2>&1 \
  || { tail -40 "$WORK/train.log"; exit 1; }
TRAIN_SECONDS=$((SECONDS - TRAIN_START))

python3 - "$WORK/train.log" "$TRAINER" "$TRAIN_SECONDS" <<'EOF'
import re, sys

log = open(sys.argv[1]).read()
iterations = int(re.search(r"_(\d+)iters$", sys.argv[2]).group(1))
epoch_times = [float(t) for t in re.findall(r"Epoch time: ([\d.]+) s", log)]
patch = re.search(r"'patch_size': \(?\[?([\d, ]+)", log)
print(f"training: patch {patch.group(1) if patch else '?'}, epoch times {epoch_times} s; seconds per iteration "
      f"(epochs after the first, train + val iterations): "
      + (f"{sum(epoch_times[1:]) / len(epoch_times[1:]) / (iterations + max(1, iterations // 5)):.3f}"
         if len(epoch_times) > 1 else "n/a") + f"; whole nnUNetv2_train call {sys.argv[3]} s")
EOF
echo "== done in $((SECONDS - START)) s; logs and figures in $WORK"
