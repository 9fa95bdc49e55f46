#!/usr/bin/env bash
# Entry point of `npm run bench:profile`: where Lethe's CPU time and memory go.
# 1. CPU: Lethe under the throughput scenario with node --cpu-prof, summarised
#    by area and by function (bench/profile/cpu-summary.ts).
# 2. Memory: a heap snapshot of Lethe holding N idle STARTTLS connections,
#    summarised by type per connection (bench/profile/heap-summary.ts).
# Loopback only; everything lives in a temporary directory, removed at the end
# unless KEEP=1. Sizes: PAIRS (50), DURATION (10 s), IDLE (2000).
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-50}
DURATION=${DURATION:-10}
IDLE=${IDLE:-2000}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
npm run build >&2

dir=$(mktemp -d /tmp/lethe-profile-XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] && echo "kept $dir" >&2 || rm -rf "$dir"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 20000))
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=profile.localhost \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
cat > "$dir/lethe.yaml" <<YAML
domain: profile.localhost
dataDir: $dir/data
c2s: { port: $port, directTlsPort: null, requireEncryption: false, host: 127.0.0.1 }
http: { enabled: false }
tls: { cert: $dir/cert.pem, key: $dir/key.pem }
auth: { scramIterations: 4096 }
log: { level: warn }
YAML
users=$((PAIRS * 2 > IDLE ? PAIRS * 2 : IDLE))
echo "profile-pass" | node dist/src/cli/main.js --config "$dir/lethe.yaml" user bulk-add --prefix bench --count "$users" --password-stdin >&2

start() {
  node "$@" dist/src/cli/main.js --config "$dir/lethe.yaml" start > "$dir/lethe.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "Lethe did not start; see $dir/lethe.log" >&2
  exit 1
}
stop() {
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=
}
loadgen() {
  node dist/bench/loadgen/main.js "$@" --port "$port" --domain profile.localhost --password profile-pass \
    --user-prefix bench --server-pid "$server_pid"
}

echo "== CPU profile: throughput, $PAIRS pairs, ${DURATION} s, no TLS" >&2
start --cpu-prof --cpu-prof-dir="$dir/cpu"
loadgen throughput --pairs "$PAIRS" --duration "$DURATION"
stop
node dist/bench/profile/cpu-summary.js "$dir"/cpu/*.cpuprofile

echo "== Heap snapshot: $IDLE idle STARTTLS connections" >&2
mkdir -p "$dir/heap"
start --heapsnapshot-signal=SIGUSR2 --diagnostic-dir="$dir/heap"
# Hold the connections long enough to take the snapshot while they are all open.
loadgen idle --count "$IDLE" --tls starttls --duration 30 > "$dir/idle.json" 2> "$dir/idle.err" &
idle_pid=$!
for _ in $(seq 1 600); do
  grep -q "connected in" "$dir/idle.err" && break
  sleep 0.5
done
sleep 3
kill -USR2 "$server_pid"
# The snapshot is written synchronously; done when its size stops changing.
last=-1
for _ in $(seq 1 120); do
  sleep 1
  size=$(stat -c %s "$dir"/heap/*.heapsnapshot 2>/dev/null || echo 0)
  [ "$size" -gt 0 ] && [ "$size" = "$last" ] && break
  last=$size
done
wait "$idle_pid"
cat "$dir/idle.json"
stop
node dist/bench/profile/heap-summary.js "$dir"/heap/*.heapsnapshot --per "$IDLE"
