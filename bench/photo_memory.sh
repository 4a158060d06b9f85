#!/usr/bin/env bash
# Peak memory and speed of training as the dataset grows: generated photo sets of 10,000,
# 50,000 and 200,000 JPEGs (the smaller ones are hard links to the first images of the
# largest). Fine-tuning at 224 px (decoded images in the image cache, plus 10,000 decoded into
# memory for comparison), and frozen training on stored features at 64 px: a feature row is
# 8 KB whatever the image size, and 64 px keeps computing 200,000 of them to minutes.
# The full run needs about 45 GB of disk and about an hour on 2 cores.
# Usage: bench/photo_memory.sh [WORK_FOLDER] [LARGEST_SET_IN_THOUSANDS]   (default /work/gen 200)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/work/gen}
largest=${2:-200}
bin=./target/release/fruitlab
cargo build --release --locked
source_set="$work/p${largest}k"
if [ ! -d "$source_set/Training" ]; then
    cargo run --release --example generate_photos -- "$source_set" $((largest * 1000)) 500 20
fi
sizes=()
for n in 10 50 200; do [ "$n" -le "$largest" ] && sizes+=("$n"); done
for n in "${sizes[@]}"; do
    set="$work/p${n}k"
    [ -d "$set" ] && continue
    for split in Training Test; do
        for class in "$source_set"/$split/*; do mkdir -p "$set/$split/$(basename "$class")"; done
    done
    find "$source_set/Training" -name 'photo*.jpg' | awk -v n=$((n * 1000)) -F'photo' \
        '{ split($NF, a, "."); if (a[1] + 0 < n) print }' |
        while read -r file; do ln "$file" "$set/Training/${file#"$source_set"/Training/}"; done
    (cd "$source_set/Test" && find . -name '*.jpg' -exec ln {} "$set/Test/{}" \;)
done
measure() { # NAME DATASET 'TRAIN FLAGS' [VAR=VALUE ...]
    local name=$1 data=$2 flags=$3; shift 3
    rm -rf "$work/runs/$name"
    # shellcheck disable=SC2086 # the flags are words
    env "$@" /usr/bin/time -v $bin train --data "$data" --out "$work/runs/$name" \
        --val-split test $flags > "$work/$name.log" 2>&1
    echo "$name: $(grep -o 'Maximum resident set size.*' "$work/$name.log")," \
        "$(grep -o 'Elapsed (wall clock).*' "$work/$name.log")"
}
finetune='--mode finetune --image-size 224 --epochs 1 --steps-per-epoch 20'
frozen='--mode frozen --image-size 64 --epochs 3'
for n in "${sizes[@]}"; do measure "finetune-p${n}k" "$work/p${n}k" "$finetune"; done
measure finetune-p10k-memory "$work/p10k" "$finetune" FRUITLAB_IMAGE_CACHE_GIB=0
for n in "${sizes[@]}"; do measure "frozen-p${n}k" "$work/p${n}k" "$frozen"; done
