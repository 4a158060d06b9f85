#!/usr/bin/env bash
# fruitlab vs PyTorch on the same machine, back to back, same batch, image size, threads and
# training batch-norm mode, in interleaved rounds, in fp32 and in bf16 (PyTorch's bf16
# autocast, fruitlab's --precision bf16): prints the median throughput of each and the median
# of the per-round ratios to PyTorch at the same precision.
#
#   bench/compare.sh [BATCH] [IMAGE_SIZE] [THREADS]
#
# Environment: BACKENDS (default "flex"; e.g. "flex tch" with a --features tch build in
# FRUITLAB_TCH, default target-tch/release/fruitlab), BATCHNORM (training-step batch norm:
# frozen, fold or train; default frozen), ROUNDS (default 3), PYTHON (default
# .venv-torch/bin/python, see bench/pytorch_reference.py), BASELINE (a fruitlab binary built
# from an earlier commit: its flex figures are measured in the same rounds, for before/after),
# PRECISIONS (default "fp32 bf16"; bf16 needs a CPU with AMX or AVX512-BF16).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-32}
size=${2:-100}
threads=${3:-$(nproc)}
python=${PYTHON:-.venv-torch/bin/python}
backends=${BACKENDS:-flex}
batchnorm=${BATCHNORM:-frozen}
rounds=${ROUNDS:-3}
precisions=${PRECISIONS:-fp32 bf16}

common=(--batch-size "$batch" --image-size "$size" --threads "$threads" --batchnorm "$batchnorm")
results=()
for _ in $(seq "$rounds"); do
    for precision in $precisions; do
        # PyTorch in its fastest CPU configuration measured here (channels-last, oneDNN).
        torch_flags=(--channels-last --json)
        if [ "$precision" = bf16 ]; then torch_flags+=(--bf16); fi
        results+=("$("$python" bench/pytorch_reference.py "${common[@]}" "${torch_flags[@]}")")
        for backend in $backends; do
            if [ "$backend" != flex ] && [ "$precision" = bf16 ]; then continue; fi
            binary=target/release/fruitlab
            if [ "$backend" = tch ]; then binary=${FRUITLAB_TCH:-target-tch/release/fruitlab}; fi
            results+=("$("$binary" bench --backend "$backend" --precision "$precision" "${common[@]}" --json)")
        done
        if [ -n "${BASELINE:-}" ] && [ "$precision" = fp32 ]; then
            results+=("$("$BASELINE" bench --backend flex "${common[@]}" --json |
                "$python" -c 'import json, sys; r = json.load(sys.stdin); r["label"] = "baseline flex"; print(json.dumps(r))')")
        fi
    done
done

"$python" - "$rounds" "${results[@]}" <<'PY'
import json, statistics, sys
rounds = int(sys.argv[1])
runs = [json.loads(arg) for arg in sys.argv[2:]]
per_round = len(runs) // rounds

def name(run):
    precision = run.get("precision", "fp32")
    if run.get("framework") == "pytorch":
        return f"pytorch {precision}"
    return run.get("label", f"fruitlab {run['backend']} {precision}")

# Per round: each run against PyTorch at its precision, and fruitlab bf16 against fruitlab
# fp32 (same backend) of the same round.
table = {}
for r in range(rounds):
    group = runs[r * per_round:(r + 1) * per_round]
    by_name = {name(run): run for run in group}
    for run in group:
        precision = run.get("precision", "fp32")
        torch = by_name[f"pytorch {precision}"]
        row = table.setdefault(name(run), {k: [] for k in ["infer", "train", "infer_torch", "train_torch", "infer_fp32", "train_fp32"]})
        row["infer"].append(run["infer_img_per_s"])
        row["train"].append(run["train_img_per_s"])
        row["infer_torch"].append(run["infer_img_per_s"] / torch["infer_img_per_s"])
        row["train_torch"].append(run["train_img_per_s"] / torch["train_img_per_s"])
        fp32 = by_name.get(name(run).replace(" bf16", " fp32"))
        row["infer_fp32"].append(run["infer_img_per_s"] / fp32["infer_img_per_s"] if fp32 else float("nan"))
        row["train_fp32"].append(run["train_img_per_s"] / fp32["train_img_per_s"] if fp32 else float("nan"))
first = runs[0]
print(f"batch {first['batch_size']}, {first['image_size']}x{first['image_size']} px, {first['threads']} threads, "
      f"training batch norm {first['train_batchnorm']}; PyTorch {first['version']}; medians of {rounds} rounds")
kernels = {run["kernels"] for run in runs if "kernels" in run}
print("fruitlab kernels: " + ", ".join(sorted(kernels)))
print("ratios: against PyTorch at the same precision (x torch), and against the same framework's fp32 (x fp32)")
print(f"{'':22}{'infer img/s':>12}{'x torch':>9}{'x fp32':>8}{'train img/s':>13}{'x torch':>9}{'x fp32':>8}")
for label, row in table.items():
    m = {key: statistics.median(values) for key, values in row.items()}
    print(f"{label:22}{m['infer']:12.1f}{m['infer_torch']:9.2f}{m['infer_fp32']:8.2f}"
          f"{m['train']:13.1f}{m['train_torch']:9.2f}{m['train_fp32']:8.2f}")
PY
