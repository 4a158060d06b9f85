#!/usr/bin/env bash
# A bounded loopback load test of `fruitlab serve`: images/s at 1, 8 and 32 concurrent
# clients against `fruitlab bench`'s batch inference throughput, latency percentiles, errors
# (designed 503s counted apart), and the server's peak memory.
#
#   bench/serve_load.sh RUN [IMAGE] [REQUESTS_PER_LEVEL]
#
# Needs the `oha` load generator (`cargo install oha --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
run=$1
image=${2:-../shared/datasets/fruits-360-mini/Test/Banana/141_100.jpg}
requests=${3:-600}
binary=target/release/fruitlab

log=$(mktemp)
"$binary" serve --run "$run" --port 0 > "$log" 2>/dev/null &
server=$!
trap 'kill -TERM $server 2>/dev/null; rm -f "$log"' EXIT
until grep -q "listening on" "$log"; do sleep 0.2; done
url="$(sed -n 's/^listening on //p' "$log")/v1/predict"

# Warm up (first allocations, page faults).
oha --no-tui -n 64 -c 8 -m POST -T image/jpeg -D "$image" "$url" > /dev/null

results=()
for clients in 1 8 32; do
    results+=("$(oha --no-tui --output-format json -n "$requests" -c "$clients" -m POST -T image/jpeg -D "$image" "$url")")
done
peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
bench=$("$binary" bench --no-train --batch-size 32 --json)

python3 - "$peak_kib" "$bench" "${results[@]}" <<'PY'
import json, sys
peak_kib, bench = int(sys.argv[1]), json.loads(sys.argv[2])
batch_rate = bench["infer_img_per_s"]
print(f"fruitlab bench inference (batch 32): {batch_rate:.1f} img/s; server peak RSS {peak_kib / 1024:.0f} MiB")
print(f"{'clients':>8}{'img/s':>9}{'vs bench':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'503s':>6}")
for clients, text in zip([1, 8, 32], sys.argv[3:]):
    r = json.loads(text)
    statuses = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
    errors = sum(v for k, v in statuses.items() if k not in (200, 503)) + sum(r.get("errorDistribution", {}).values())
    rate = r["summary"]["requestsPerSec"] * r["summary"]["successRate"]
    latency = r["latencyPercentiles"]
    print(f"{clients:>8}{rate:>9.1f}{rate / batch_rate:>10.2f}{1e3 * latency['p50']:>9.1f}"
          f"{1e3 * latency['p99']:>9.1f}{errors:>8}{statuses.get(503, 0):>6}")
PY
