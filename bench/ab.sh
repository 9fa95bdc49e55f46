#!/usr/bin/env bash
# Entry point of `npm run bench:ab -- REF [RUNS]`: message throughput of Lethe at git REF against
# the working tree, alternating runs on the same machine (the fairest comparison on a noisy one).
# Each run: a fresh server (no TLS, HTTP off, 100 accounts), the load generator's throughput
# scenario (50 pairs, window 10, 8 s measured). Prints one line per run:
#   tree msgs/s p50-ms p99-ms server-CPU-µs/msg lost
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:?usage: bench/ab.sh REF [RUNS]}
runs=${2:-2}
npm run build >&2
base=$(mktemp -d /tmp/lethe-ab-base-XXXXXX)
trap 'git worktree remove --force "$base" >/dev/null 2>&1 || rm -rf "$base"' EXIT
git worktree add -q --detach "$base" "$ref"
ln -s "$PWD/node_modules" "$base/node_modules"
(cd "$base" && npx tsc -p . >&2)

one() {
  local tree=$1 dir port pid
  dir=$(mktemp -d /tmp/lethe-ab-XXXXXX)
  port=$((20000 + RANDOM % 20000))
  cat > "$dir/lethe.yaml" <<YAML
domain: ab.localhost
dataDir: $dir/data
c2s: { port: $port, directTlsPort: null, requireEncryption: false, host: 127.0.0.1 }
http: { enabled: false }
auth: { scramIterations: 4096 }
log: { level: error }
YAML
  echo ab-pass | node "$tree/dist/src/cli/main.js" --config "$dir/lethe.yaml" user bulk-add --prefix bench --count 100 --password-stdin >/dev/null 2>&1
  node "$tree/dist/src/cli/main.js" --config "$dir/lethe.yaml" start > "$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  node dist/bench/loadgen/main.js throughput --port "$port" --domain ab.localhost --password ab-pass \
    --user-prefix bench --server-pid "$pid" --pairs 50 --duration 8 2>/dev/null |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);console.log(r.msgsPerSec.toFixed(0),r.latencyMs.p50,r.latencyMs.p99,r.serverCpuUsPerMsg,r.lost)})'
  kill "$pid"; wait "$pid" || true
  rm -rf "$dir"
}

for _ in $(seq 1 "$runs"); do
  echo -n "$ref: "; one "$base"
  echo -n "working tree: "; one "$PWD"
done
