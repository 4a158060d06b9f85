#!/usr/bin/env bash
# Peak memory and speed of fine-tuning at 224 px as the dataset grows: generated photo sets of
# 10,000, 50,000 and 200,000 JPEGs (the smaller ones are hard links to the first images of the
# largest), decoded into the image cache, plus 10,000 decoded into memory for comparison.
# Needs about 45 GB of disk (4.3 GB of JPEGs, 39 GB of image cache) and about 45 minutes on
# 2 cores. Usage: bench/photo_memory.sh [WORK_FOLDER]   (default /work/gen)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/work/gen}
bin=./target/release/fruitlab
cargo build --release --locked
if [ ! -d "$work/p200k/Training" ]; then
    cargo run --release --example generate_photos -- "$work/p200k" 200000 500 20
fi
for n in 10 50; do
    set="$work/p${n}k"
    [ -d "$set" ] && continue
    for split in Training Test; do
        for class in "$work"/p200k/$split/*; do mkdir -p "$set/$split/$(basename "$class")"; done
    done
    find "$work/p200k/Training" -name 'photo*.jpg' | awk -v n=$((n * 1000)) -F'photo' \
        '{ split($NF, a, "."); if (a[1] + 0 < n) print }' |
        while read -r file; do ln "$file" "$set/Training/${file#"$work"/p200k/Training/}"; done
    (cd "$work/p200k/Test" && find . -name '*.jpg' -exec ln {} "$set/Test/{}" \;)
done
measure() { # NAME DATASET [VAR=VALUE ...]
    local name=$1 data=$2; shift 2
    rm -rf "$work/runs/$name"
    env "$@" /usr/bin/time -v $bin train --data "$data" --out "$work/runs/$name" \
        --mode finetune --image-size 224 --val-split test --epochs 1 --steps-per-epoch 20 \
        > "$work/$name.log" 2>&1
    echo "$name: $(grep -o 'Maximum resident set size.*' "$work/$name.log")," \
        "$(grep -o 'train [0-9.]* / .*img/s' "$work/$name.log")"
}
measure p10k "$work/p10k"
measure p50k "$work/p50k"
measure p200k "$work/p200k"
measure p10k-memory "$work/p10k" FRUITLAB_IMAGE_CACHE_GIB=0
