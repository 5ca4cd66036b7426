#!/usr/bin/env bash
# Run `nscompile bench` over every example spec and write one report.
#
#   bash examples/bench_all.sh [OUT_DIR] [nscompile bench options...]
#   bash examples/bench_all.sh bench-report --device cuda
#   bash examples/bench_all.sh /tmp/quick --batch 1,64 --reps 2     # a quick pass
#
# OUT_DIR (default bench-report) receives report.txt (every table, one after another),
# SPEC.json (every raw figure) and SPEC.png (the chart) for each examples/SPEC.ns.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-bench-report}"
shift || true
mkdir -p "$out"
report="$out/report.txt"
: > "$report"
status=0
for spec in "$here"/*.ns; do
    name="$(basename "$spec" .ns)"
    echo "== $name" >&2
    if ! python -m nscompile bench "$spec" --json "$out/$name.json" --plot "$out/$name.png" "$@" \
        >> "$report"; then
        echo "bench FAILED for $spec" | tee -a "$report" >&2
        status=1
    fi
    echo >> "$report"
done
echo "wrote $report" >&2
exit $status
