#!/usr/bin/env bash
# fruitlab vs PyTorch on the same machine, back to back, same batch, image size and threads:
# prints each backend's throughput and its ratio to PyTorch's.
#
#   bench/compare.sh [BATCH] [IMAGE_SIZE] [THREADS]
#
# Environment: BACKENDS (default "flex"; e.g. "flex tch" with a --features tch build in
# FRUITLAB_TCH), BATCHNORM (training-step batch norm: frozen, fold or train; default frozen),
# PYTHON (default .venv-torch/bin/python, see bench/pytorch_reference.py).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-32}
size=${2:-100}
threads=${3:-$(nproc)}
python=${PYTHON:-.venv-torch/bin/python}
backends=${BACKENDS:-flex}

batchnorm=${BATCHNORM:-frozen}
common=(--batch-size "$batch" --image-size "$size" --threads "$threads" --batchnorm "$batchnorm")
# PyTorch in its fastest CPU configuration measured here (channels-last, oneDNN).
torch_json=$("$python" bench/pytorch_reference.py "${common[@]}" --channels-last --json)
results=("$torch_json")
for backend in $backends; do
    binary=target/release/fruitlab
    if [ "$backend" = tch ]; then binary=${FRUITLAB_TCH:-target-tch/release/fruitlab}; fi
    results+=("$("$binary" bench --backend "$backend" "${common[@]}" --json)")
done

"$python" - "${results[@]}" <<'PY'
import json, sys
torch, *ours = [json.loads(arg) for arg in sys.argv[1:]]
print(f"batch {torch['batch_size']}, {torch['image_size']}x{torch['image_size']} px, {torch['threads']} threads, "
      f"training batch norm {torch['train_batchnorm']}; PyTorch {torch['version']}")
print(f"{'':18}{'infer img/s':>12}{'ratio':>8}{'train img/s':>13}{'ratio':>8}")
print(f"{'pytorch':18}{torch['infer_img_per_s']:12.1f}{'1.00':>8}{torch['train_img_per_s']:13.1f}{'1.00':>8}")
for r in ours:
    name = f"fruitlab {r['backend']}"
    print(f"{name:18}{r['infer_img_per_s']:12.1f}{r['infer_img_per_s'] / torch['infer_img_per_s']:8.2f}"
          f"{r['train_img_per_s']:13.1f}{r['train_img_per_s'] / torch['train_img_per_s']:8.2f}")
PY
