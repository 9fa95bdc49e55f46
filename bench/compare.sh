#!/usr/bin/env bash
# Entry point of `npm run bench:compare`: builds, raises the open-file limit
# (10 000 idle connections need it in the servers and the load generator,
# which inherit it), then runs the comparison. Arguments go to compare.js.
set -euo pipefail
cd "$(dirname "$0")/.."
# 65536, or as high as the hard limit allows (compare.js checks it is enough).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# tsc still emits when other parts of the tree have type errors.
npm run build >&2 || echo "[compare.sh] npm run build reported errors; using what tsc emitted" >&2
[ -f dist/bench/compare.js ] || { echo "[compare.sh] dist/bench/compare.js missing after build" >&2; exit 1; }
exec node dist/bench/compare.js "$@"
