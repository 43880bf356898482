#!/usr/bin/env bash
# GPU check (issue 6): on a machine with a CUDA GPU, a few hundred AMP training steps of the SkyLink
# model and a faiss-gpu index, with throughput. Finishes within 8 minutes on one H100.
# Usage: bash bench/gpu_check.sh   (PYTHON=... to pick an interpreter with CUDA torch)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" \
  || echo "warning: no CUDA device visible to $PY; the check runs on the CPU"
if ! "$PY" -c "import faiss; assert faiss.get_num_gpus() > 0" 2>/dev/null; then
  echo "note: faiss has no GPU support here (pip install faiss-gpu-cu12 where the registry has it); searching on the CPU"
fi
timeout 480 "$PY" bench/gpu_check.py "$@"
