#!/bin/bash
# Latency of two compressed (e.g. QAT int8 and pruned+QAT int8) checkpoints on openvino-cpu,
# each built by `edgeseg build` from the checkpoint alone (no calibration data) and timed
# with `edgeseg bench` at 1 and 2 threads. Run on a quiet machine.
#   tools/bench_qat_latency.sh RUN1/int8_qat.pt RUN2/pruned_int8_qat.pt [WORK_DIR]
set -euo pipefail
a=$1; b=$2; work=${3:-$(mktemp -d)}
for ck in "$a" "$b"; do
  name=$(basename "$(dirname "$ck")")-$(basename "$ck" .pt)
  edgeseg build "$ck" --target openvino-cpu --out "$work/$name" --force > /dev/null
  for t in 1 2; do
    edgeseg bench "$work/$name" --runs 200 --warmup 20 --threads $t --memory-runs 0 --json "$work/$name-t$t.json" > /dev/null || true
    python -c "import json,sys; l=json.load(open(sys.argv[1]))['latency_ms']; print(sys.argv[2], 'threads', sys.argv[3], 'p50 %.2f p90 %.2f p99 %.2f ms' % (l['p50'], l['p90'], l['p99']))" "$work/$name-t$t.json" "$name" $t
  done
done
uptime
