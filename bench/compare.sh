#!/usr/bin/env bash
# fruitlab vs PyTorch on the same machine, back to back, same batch, image size, threads and
# training batch-norm mode, in interleaved rounds: prints the median throughput of each and
# the median of the per-round ratios to PyTorch.
#
#   bench/compare.sh [BATCH] [IMAGE_SIZE] [THREADS]
#
# Environment: BACKENDS (default "flex"; e.g. "flex tch" with a --features tch build in
# FRUITLAB_TCH, default target-tch/release/fruitlab), BATCHNORM (training-step batch norm:
# frozen, fold or train; default frozen), ROUNDS (default 3), PYTHON (default
# .venv-torch/bin/python, see bench/pytorch_reference.py), BASELINE (a fruitlab binary built
# from an earlier commit: its flex figures are measured in the same rounds, for before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-32}
size=${2:-100}
threads=${3:-$(nproc)}
python=${PYTHON:-.venv-torch/bin/python}
backends=${BACKENDS:-flex}
batchnorm=${BATCHNORM:-frozen}
rounds=${ROUNDS:-3}

common=(--batch-size "$batch" --image-size "$size" --threads "$threads" --batchnorm "$batchnorm")
results=()
for _ in $(seq "$rounds"); do
    # PyTorch in its fastest CPU configuration measured here (channels-last, oneDNN).
    results+=("$("$python" bench/pytorch_reference.py "${common[@]}" --channels-last --json)")
    for backend in $backends; do
        binary=target/release/fruitlab
        if [ "$backend" = tch ]; then binary=${FRUITLAB_TCH:-target-tch/release/fruitlab}; fi
        results+=("$("$binary" bench --backend "$backend" "${common[@]}" --json)")
    done
    if [ -n "${BASELINE:-}" ]; then
        results+=("$("$BASELINE" bench --backend flex "${common[@]}" --json |
            "$python" -c 'import json, sys; r = json.load(sys.stdin); r["label"] = "baseline flex"; print(json.dumps(r))')")
    fi
done

"$python" - "$rounds" "${results[@]}" <<'PY'
import json, statistics, sys
rounds = int(sys.argv[1])
runs = [json.loads(arg) for arg in sys.argv[2:]]
per_round = len(runs) // rounds
table = {}
for r in range(rounds):
    group = runs[r * per_round:(r + 1) * per_round]
    torch = group[0]
    for run in group:
        name = "pytorch" if run.get("framework") == "pytorch" else run.get("label", f"fruitlab {run['backend']}")
        row = table.setdefault(name, {"infer": [], "train": [], "infer_ratio": [], "train_ratio": []})
        row["infer"].append(run["infer_img_per_s"])
        row["train"].append(run["train_img_per_s"])
        row["infer_ratio"].append(run["infer_img_per_s"] / torch["infer_img_per_s"])
        row["train_ratio"].append(run["train_img_per_s"] / torch["train_img_per_s"])
torch = runs[0]
print(f"batch {torch['batch_size']}, {torch['image_size']}x{torch['image_size']} px, {torch['threads']} threads, "
      f"training batch norm {torch['train_batchnorm']}; PyTorch {torch['version']}; medians of {rounds} rounds")
print(f"{'':18}{'infer img/s':>12}{'ratio':>8}{'train img/s':>13}{'ratio':>8}")
for name, row in table.items():
    m = {key: statistics.median(values) for key, values in row.items()}
    print(f"{name:18}{m['infer']:12.1f}{m['infer_ratio']:8.2f}{m['train']:13.1f}{m['train_ratio']:8.2f}")
PY
