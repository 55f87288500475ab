#!/usr/bin/env bash
# jobgate load benchmark: jobgate vs a bare Pingora proxy (the floor) vs nginx (no auth) vs
# HAProxy 2.6 `jwt_verify`, on loopback.
#
#   bash benches/load/run.sh                 # defaults: 5 rounds, 5 s per run, wrk -t1 -c32
#   bash benches/load/run.sh -r 7 -d 10 -c 64 --workers 2
#   bash benches/load/run.sh --modes callgrind --no-build   # instructions per request only
#   bash benches/load/run.sh --modes cluster --no-build     # one Redis-backed limit vs none
#   bash benches/load/run.sh --help
#
# What it does (README.md beside this file has the details and how to read the table):
#  1. installs wrk, nginx, haproxy (Debian packages) if missing, builds jobgate and the
#     floor (examples/floor.rs: bare Pingora, same Cargo.lock and allocator) in release;
#  2. makes an RSA-2048 key, its JWKS and PEM, and GitHub-Actions-shaped RS256 tokens in a
#     temporary directory (never in the tree);
#  3. starts on 127.0.0.1: nginx as upstream (`return 200 "ok"`) and as the issuer's static
#     JWKS/discovery server, jobgate (authenticated, rate-limited and public routes), the
#     floor, nginx as a plain reverse proxy, HAProxy with jwt_verify against the same key;
#  4. checks every target answers as it should (200 with a valid token, 401 without, ...);
#  5. runs the targets in rotation (A B C D, A B C D, ...) per mode with identical wrk
#     settings, sampling each proxy's CPU time from /proc/<pid>/stat around every run;
#  6. prints a Markdown table (medians of rounds; ratios computed within each round);
#  7. mode `memory`: jobgate's RSS at idle, with 1 000 idle keep-alive connections (nginx and
#     HAProxy too) and with 100 000 cached tokens, then past the cache bound;
#  8. mode `cluster` (not in the defaults: needs redis-server): a loopback redis-server without
#     persistence and a jobgate with [cluster]; its authenticated route with one Redis-backed
#     limit against the same route without limits, jobgate's and Redis's CPU per request.
# Every process it starts is stopped by PID on exit; every run is bounded by `timeout`.
# shellcheck disable=SC2154  # PID_<name> variables are set by start() through printf -v

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

ROUNDS=5
DURATION=5
THREADS=1
CONNS=32
WORKERS=1
PORT_BASE=18400
TOKEN_COUNT=2000
MODES="reused fresh latency limits audit memory"
MEM_TOKENS=100000
MEM_CONNS=1000
BUILD=1
JOBGATE_BIN=""
FLOOR_BIN=""
KEEP=0
OUT_DIR=""
PERF=0
CALLGRIND=0
HAPROXY_FULL=0

usage() {
    cat <<EOF
usage: bash benches/load/run.sh [options]

  -r, --rounds N        rounds per mode (default $ROUNDS)
  -d, --duration S      seconds per wrk run (default $DURATION)
  -t, --threads N       wrk threads (default $THREADS)
  -c, --connections N   wrk connections for the throughput modes (default $CONNS)
      --workers N       worker processes/threads of EVERY proxy and of the upstream:
                        nginx worker_processes, HAProxy nbthread, jobgate [server] threads
                        (default $WORKERS)
      --modes "LIST"    any of: reused fresh latency limits audit memory cluster callgrind
                        (default "$MODES"; callgrind = --callgrind; cluster needs
                        redis-server and redis-cli, Debian package redis-server)
      --tokens N        size of the fresh-token ring (default $TOKEN_COUNT)
      --memory-tokens N memory mode: jobgate's token_cache_entries, and the number of
                        distinct tokens cached; N + 30 % are sent in all (default $MEM_TOKENS)
      --memory-conns N  memory mode: idle keep-alive connections held open, at most 4000
                        (default $MEM_CONNS)
      --port-base P     uses ports P+1 .. P+18 on 127.0.0.1 (default $PORT_BASE)
      --no-build        do not run cargo build; use target/release/jobgate and
                        target/release/examples/floor as they are
      --jobgate PATH    benchmark this jobgate binary (implies --no-build)
      --floor PATH      use this floor binary (bare Pingora proxy, examples/floor.rs)
      --haproxy-full    HAProxy also checks nbf and the route's allow rule and sets two
                        identity headers, like jobgate (default: alg, signature, iss, aud, exp)
      --perf            after the table, profile jobgate with perf (reused and fresh runs)
      --callgrind       after the table, count user-space instructions per request of each
                        proxy under valgrind --tool=callgrind (stable on a noisy machine)
      --out DIR         keep results.tsv, table.md, configs and logs in DIR
      --keep            keep the temporary directory (keys, tokens, configs, logs)
  -h, --help
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        -r|--rounds) ROUNDS=$2; shift 2 ;;
        -d|--duration) DURATION=$2; shift 2 ;;
        -t|--threads) THREADS=$2; shift 2 ;;
        -c|--connections) CONNS=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --tokens) TOKEN_COUNT=$2; shift 2 ;;
        --memory-tokens) MEM_TOKENS=$2; shift 2 ;;
        --memory-conns) MEM_CONNS=$2; shift 2 ;;
        --port-base) PORT_BASE=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --jobgate) JOBGATE_BIN=$2; BUILD=0; shift 2 ;;
        --floor) FLOOR_BIN=$2; shift 2 ;;
        --perf) PERF=1; shift ;;
        --callgrind) CALLGRIND=1; shift ;;
        --haproxy-full) HAPROXY_FULL=1; shift ;;
        --out) OUT_DIR=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
for n in ROUNDS DURATION THREADS CONNS WORKERS TOKEN_COUNT PORT_BASE MEM_TOKENS MEM_CONNS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: $n must be a positive integer" >&2; exit 2; }
done
# nginx has worker_connections 4096: room for the held connections and the upstream ones.
[[ $MEM_CONNS -le 4000 ]] || { echo "run.sh: --memory-conns is at most 4000" >&2; exit 2; }
MEMORY=0
CLUSTER=0
for m in $MODES; do
    case $m in
        reused|fresh|latency|limits|audit) ;;
        memory) MEMORY=1 ;;
        cluster) CLUSTER=1 ;;
        callgrind) CALLGRIND=1 ;;
        *) echo "run.sh: unknown mode $m" >&2; exit 2 ;;
    esac
done

log() { printf '[load %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools
need=()
for tool in wrk nginx haproxy openssl curl python3; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# Building pingora needs cmake (libz-ng-sys) and a C compiler.
if [[ $BUILD -eq 1 ]]; then
    command -v cmake >/dev/null 2>&1 || need+=(cmake)
fi
# The cluster mode starts a redis-server of its own on loopback; it is opt-in, so it says
# what is missing instead of installing it.
if [[ $CLUSTER -eq 1 ]]; then
    for tool in redis-server redis-cli; do
        command -v "$tool" >/dev/null 2>&1 \
            || die "the cluster mode needs $tool (apt-get install -y redis-server; .ci/run installs it)"
    done
fi
if [[ ${#need[@]} -gt 0 ]]; then
    [[ $EUID -eq 0 ]] || die "missing ${need[*]}; run as root or: apt-get install -y ${need[*]}"
    log "installing ${need[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    # Package installation must not start the system services on ports 80/443.
    policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
    fi
    timeout 900 apt-get install -y -qq "${need[@]}" >/dev/null
    [[ $policy_added -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
fi
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- jobgate and floor binaries
# The floor is a bare Pingora proxy built from the same Cargo.lock with the same allocator
# (examples/floor.rs): what jobgate costs over its engine.
if [[ $BUILD -eq 1 ]]; then
    log "cargo build --release (jobgate and the floor)"
    (cd "$REPO" && timeout 1800 cargo build --release --locked --bin jobgate --example floor) \
        || die "cargo build --release failed"
fi
[[ -n $JOBGATE_BIN ]] || JOBGATE_BIN="$REPO/target/release/jobgate"
[[ -n $FLOOR_BIN ]] || FLOOR_BIN="$REPO/target/release/examples/floor"
[[ -x $JOBGATE_BIN ]] || die "no jobgate binary at $JOBGATE_BIN (build it, or pass --jobgate PATH)"
if [[ ! -x $FLOOR_BIN ]]; then
    log "no floor binary at $FLOOR_BIN: cargo build --release --example floor"
    (cd "$REPO" && timeout 1800 cargo build --release --locked --example floor) \
        || die "cargo build --release --example floor failed (or pass --floor PATH)"
fi

# ---------------------------------------------------------------- work dir and cleanup
WORK=$(mktemp -d /tmp/jobgate-load.XXXXXX)
chmod 755 "$WORK"          # nginx workers (user nobody) read the issuer files
mkdir -p "$WORK"/{key,issuer,conf,logs,run,tmp}
chmod 700 "$WORK/key"
# A private copy: others may rebuild target/ while the benchmark runs.
cp "$JOBGATE_BIN" "$WORK/jobgate"
JG="$WORK/jobgate"
cp "$FLOOR_BIN" "$WORK/floor"
FLOOR="$WORK/floor"

STARTED_PIDS=()
reap() {  # $1 pid already sent TERM, $2 tenths of a second to wait before KILL
    local _
    for _ in $(seq 1 "$2"); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        reap "$pid" 50
    done
    if [[ -n $OUT_DIR ]]; then
        mkdir -p "$OUT_DIR"
        cp -r "$WORK/conf" "$WORK/logs" "$OUT_DIR/" 2>/dev/null || true
        cp "$WORK"/results.tsv "$WORK"/table.md "$WORK"/meta.env "$OUT_DIR/" 2>/dev/null || true
        cp "$WORK"/perf-*.txt "$WORK"/callgrind-*.txt "$OUT_DIR/" 2>/dev/null || true
    fi
    if [[ $KEEP -eq 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- ports
P_UP=$((PORT_BASE + 1))       # upstream (nginx, return 200 "ok")
P_ISS=$((PORT_BASE + 2))      # issuer: discovery + JWKS (same nginx)
P_JG=$((PORT_BASE + 3))       # jobgate, default token cache
P_JG_ADMIN=$((PORT_BASE + 4))
P_JGF=$((PORT_BASE + 5))      # jobgate, cache bounded to 8 entries (fresh-token mode)
P_JGF_ADMIN=$((PORT_BASE + 6))
P_JGA=$((PORT_BASE + 7))      # jobgate, audit log to a file
P_JGA_ADMIN=$((PORT_BASE + 8))
P_NGX=$((PORT_BASE + 9))      # nginx reverse proxy, no auth
P_HAP=$((PORT_BASE + 10))     # HAProxy with jwt_verify
P_CG=$((PORT_BASE + 11))      # --callgrind: the target under valgrind
P_CG_ADMIN=$((PORT_BASE + 12))
P_JGM=$((PORT_BASE + 13))     # memory mode: jobgate with token_cache_entries = MEM_TOKENS
P_JGM_ADMIN=$((PORT_BASE + 14))
P_FLOOR=$((PORT_BASE + 15))   # the floor: bare Pingora proxy
P_JGC=$((PORT_BASE + 16))     # cluster mode: jobgate with [cluster]
P_JGC_ADMIN=$((PORT_BASE + 17))
P_REDIS=$((PORT_BASE + 18))   # cluster mode: redis-server
for port in $(seq $((PORT_BASE + 1)) $((PORT_BASE + 18))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is in use; pick other ports with --port-base"
    fi
done

ISSUER="http://127.0.0.1:$P_ISS"
AUDIENCE="https://jobgate-bench.internal.example"

# ---------------------------------------------------------------- key and tokens
log "RSA-2048 key, JWKS, PEM and $TOKEN_COUNT + 1 tokens"
openssl genrsa -out "$WORK/key/key.pem" 2048 2>/dev/null
openssl rsa -in "$WORK/key/key.pem" -pubout -out "$WORK/issuer/pubkey.pem" 2>/dev/null
timeout 600 python3 "$HERE/mint.py" "$WORK/key/key.pem" "$WORK/issuer" \
    --issuer "$ISSUER" --audience "$AUDIENCE" --count "$TOKEN_COUNT"
TOKEN=$(cat "$WORK/issuer/token")

# ---------------------------------------------------------------- configs
NGINX_USER=""
if [[ $EUID -eq 0 ]]; then
    NGINX_USER="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
fi

nginx_common() {  # $1 = name
    cat <<EOF
$NGINX_USER
worker_processes $WORKERS;
daemon off;
master_process on;
pid $WORK/run/$1.pid;
error_log $WORK/logs/$1-error.log warn;
events { worker_connections 4096; multi_accept on; }
EOF
}
nginx_http_common() {  # $1 = name
    cat <<EOF
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/tmp/$1-body;
    proxy_temp_path $WORK/tmp/$1-proxy;
    fastcgi_temp_path $WORK/tmp/$1-fastcgi;
    uwsgi_temp_path $WORK/tmp/$1-uwsgi;
    scgi_temp_path $WORK/tmp/$1-scgi;
EOF
}

{
    nginx_common upstream
    cat <<EOF
http {
$(nginx_http_common upstream)
    default_type text/plain;
    server {
        listen 127.0.0.1:$P_UP;
        location / { return 200 "ok"; }
    }
    server {
        listen 127.0.0.1:$P_ISS;
        default_type application/json;
        location = /.well-known/openid-configuration { alias $WORK/issuer/openid-configuration; }
        location = /jwks { alias $WORK/issuer/jwks.json; }
    }
}
EOF
} > "$WORK/conf/nginx-upstream.conf"

{
    nginx_common nginx-proxy
    cat <<EOF
http {
$(nginx_http_common nginx-proxy)
    upstream backend {
        server 127.0.0.1:$P_UP;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$P_NGX;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} > "$WORK/conf/nginx-proxy.conf"

# HAProxy 2.6: jwt_verify checks the signature only; claims are checked with
# jwt_payload_query, each of which base64-decodes and scans the whole payload again. Default
# ("lean", the field's usual config and the strongest HAProxy to compare with): alg,
# signature, iss, aud, exp. With --haproxy-full it does what jobgate's route does: also nbf
# (60 s leeway, jobgate's default), the allow rule (owner, owner id, ref main or v* tag,
# environment) and two identity headers. Authorization is stripped in both. HAProxy cannot
# read a JWKS: it gets the PEM.
HAPROXY_EXTRA=""
if [[ $HAPROXY_FULL -eq 1 ]]; then
    HAPROXY_EXTRA=$(cat <<EOF
    http-request set-var(txn.nbf) var(txn.bearer),jwt_payload_query('\$.nbf','int')
    http-request deny deny_status 401 if { var(txn.now),add(60),sub(txn.nbf) -m int lt 0 }
    http-request set-var(txn.owner) var(txn.bearer),jwt_payload_query('\$.repository_owner')
    http-request set-var(txn.owner_id) var(txn.bearer),jwt_payload_query('\$.repository_owner_id')
    http-request set-var(txn.ref) var(txn.bearer),jwt_payload_query('\$.ref')
    http-request set-var(txn.env) var(txn.bearer),jwt_payload_query('\$.environment')
    http-request deny deny_status 403 unless { var(txn.owner) -m str acme } { var(txn.owner_id) -m str 51234567 } { var(txn.env) -m str production }
    http-request deny deny_status 403 unless { var(txn.ref) -m str refs/heads/main } || { var(txn.ref) -m beg refs/tags/v }
    http-request set-header X-GitHub-Repository %[var(txn.bearer),jwt_payload_query('\$.repository')]
    http-request set-header X-GitHub-Run-Id %[var(txn.bearer),jwt_payload_query('\$.run_id')]
EOF
)
fi
cat > "$WORK/conf/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn 8192
    log stderr format short local0 err

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s
    option http-keep-alive

frontend jwt
    bind 127.0.0.1:$P_HAP
    http-request set-var(txn.bearer) http_auth_bearer
    http-request deny deny_status 401 unless { var(txn.bearer) -m found }
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$WORK/issuer/pubkey.pem") -m int 1 }
    http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
    http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 unless { var(txn.iss) -m str $ISSUER }
    http-request deny deny_status 401 unless { var(txn.aud) -m str $AUDIENCE }
    http-request deny deny_status 401 if { var(txn.exp),add(60),sub(txn.now) -m int lt 0 }
$HAPROXY_EXTRA
    http-request del-header Authorization
    default_backend upstream

backend upstream
    server up 127.0.0.1:$P_UP
EOF

# The limited route's limits: two local ones (limits mode) or one in Redis (cluster mode), all
# high enough never to refuse.
LIMIT_CHECK_RUN='[[route.limit]]
key = "check_run_id"
requests = 1000000000
per = "1s"'
LIMITS_TWO="$LIMIT_CHECK_RUN

[[route.limit]]
key = \"client_ip\"
requests = 1000000000
per = \"1s\""
jobgate_config() {  # $1 listen port, $2 admin port, $3 extra [server] lines, $4 audit output,
                    # $5 the limited route's limits (default two), $6 extra sections ([cluster])
    cat <<EOF
# Generated by benches/load/run.sh.
[server]
listen = "127.0.0.1:$1"
admin_listen = "127.0.0.1:$2"
threads = $WORKERS
grace_period = "1s"
$3

[audit]
output = "$4"
${6:-}

[[issuer]]
name = "bench"
url = "$ISSUER"
jwks_url = "$ISSUER/jwks"
kind = "github"
algorithms = ["RS256"]

# Authenticated: GitHub-shaped rule that every benchmark token satisfies.
[[route]]
name = "api"
path_prefix = "/api"
upstream = "http://127.0.0.1:$P_UP"
audience = "$AUDIENCE"

[[route.deny]]
runner_environment = "self-hosted"

[[route.allow]]
repository_owner = "acme"
repository_owner_id = "51234567"
ref = ["refs/heads/main", "refs/tags/v*"]
environment = "production"

# The same route with limits high enough never to refuse: what counting costs (issues #12, #13).
[[route]]
name = "limited"
path_prefix = "/limited"
upstream = "http://127.0.0.1:$P_UP"
audience = "$AUDIENCE"

${5:-$LIMITS_TWO}

[[route.deny]]
runner_environment = "self-hosted"

[[route.allow]]
repository_owner = "acme"
repository_owner_id = "51234567"
ref = ["refs/heads/main", "refs/tags/v*"]
environment = "production"

# Public: no token needed.
[[route]]
name = "public"
path_prefix = "/public"
upstream = "http://127.0.0.1:$P_UP"
auth = false
EOF
}
jobgate_config "$P_JG" "$P_JG_ADMIN" "" off > "$WORK/conf/jobgate.toml"
# Fresh-token mode: the cache is bounded to one set of 8 entries, far below the
# ring of $TOKEN_COUNT tokens cycled in order, so (almost) every request is a cache miss
# and pays a full RS256 verify, as a never-seen token would. Checked from /metrics.
jobgate_config "$P_JGF" "$P_JGF_ADMIN" "token_cache_entries = 1" off > "$WORK/conf/jobgate-fresh.toml"
jobgate_config "$P_JGA" "$P_JGA_ADMIN" "" "$WORK/logs/audit.jsonl" > "$WORK/conf/jobgate-audit.toml"
# Memory mode: its own instance, started only for that mode, with an explicit cache bound.
jobgate_config "$P_JGM" "$P_JGM_ADMIN" "token_cache_entries = $MEM_TOKENS" off > "$WORK/conf/jobgate-memory.toml"
# Cluster mode: one limit, its buckets in Redis (the same Lua round trip every replica makes).
jobgate_config "$P_JGC" "$P_JGC_ADMIN" "" off "$LIMIT_CHECK_RUN" "
[cluster]
redis_url = \"redis://127.0.0.1:$P_REDIS/0\"
key_prefix = \"jobgate-bench:\"" > "$WORK/conf/jobgate-cluster.toml"

for cfg in jobgate jobgate-fresh jobgate-audit jobgate-memory jobgate-cluster; do
    "$JG" check -c "$WORK/conf/$cfg.toml" > "$WORK/logs/$cfg-check.txt" 2>&1 \
        || { cat "$WORK/logs/$cfg-check.txt" >&2; die "jobgate check refused $cfg.toml"; }
done
haproxy -c -f "$WORK/conf/haproxy.cfg" > "$WORK/logs/haproxy-check.txt" 2>&1 \
    || { cat "$WORK/logs/haproxy-check.txt" >&2; die "haproxy -c refused the config"; }
for cfg in nginx-upstream nginx-proxy; do
    nginx -t -q -p "$WORK/" -e "$WORK/logs/$cfg-early.log" -c "$WORK/conf/$cfg.conf" \
        > "$WORK/logs/$cfg-t.txt" 2>&1 || { cat "$WORK/logs/$cfg-t.txt" >&2; die "nginx -t refused $cfg.conf"; }
done

# ---------------------------------------------------------------- start
start() {  # $1 = name, rest = command; sets PID_<name>
    local name=$1; shift
    "$@" > "$WORK/logs/$name.out" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    printf -v "PID_${name//-/_}" '%s' "$pid"
}
wait_port() {  # $1 = port, $2 = name, $3 = pid
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { cat "$WORK/logs/$2.out" >&2; die "$2 exited at start"; }
        sleep 0.1
    done
    die "$2 did not listen on $1 within 10 s"
}
wait_ready() {  # $1 = admin port, $2 = name
    for _ in $(seq 1 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/readyz") == 200 ]] && return 0
        sleep 0.1
    done
    cat "$WORK/logs/$2.out" >&2
    die "$2 not ready (/readyz) within 10 s"
}
metric_value() {  # $1 admin port, $2 metric name: its value summed over its labels (integer; 0 if absent)
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" \
        | awk -v name="$2" '$1 == name || index($1, name "{") == 1 { v += $2 } END { printf "%d\n", v }'
}

# Memory mode holds MEM_CONNS client sockets (python) and as many in jobgate, nginx and
# HAProxy, which all inherit this shell's open-files limit.
if [[ $MEMORY -eq 1 ]]; then
    want_fds=$((MEM_CONNS + 1024))
    if [[ $(ulimit -Sn) != unlimited && $(ulimit -Sn) -lt $want_fds ]]; then
        ulimit -Sn "$want_fds" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
        [[ $(ulimit -Sn) == unlimited || $(ulimit -Sn) -ge $want_fds ]] \
            || die "open-files limit $(ulimit -Sn) < $want_fds needed by --memory-conns $MEM_CONNS"
    fi
fi

log "starting upstream+issuer (nginx), jobgate x3, floor, nginx proxy, haproxy; $WORKERS worker(s) each"
start upstream nginx -p "$WORK/" -e "$WORK/logs/upstream-early.log" -c "$WORK/conf/nginx-upstream.conf"
wait_port "$P_UP" upstream "$PID_upstream"
wait_port "$P_ISS" upstream "$PID_upstream"
start jobgate "$JG" serve -c "$WORK/conf/jobgate.toml"
start jobgate-fresh "$JG" serve -c "$WORK/conf/jobgate-fresh.toml"
start jobgate-audit "$JG" serve -c "$WORK/conf/jobgate-audit.toml"
start floor "$FLOOR" "127.0.0.1:$P_FLOOR" "127.0.0.1:$P_UP" "$WORKERS"
start nginx-proxy nginx -p "$WORK/" -e "$WORK/logs/nginx-proxy-early.log" -c "$WORK/conf/nginx-proxy.conf"
start haproxy haproxy -db -f "$WORK/conf/haproxy.cfg"
wait_port "$P_JG" jobgate "$PID_jobgate"
wait_port "$P_JGF" jobgate-fresh "$PID_jobgate_fresh"
wait_port "$P_JGA" jobgate-audit "$PID_jobgate_audit"
wait_port "$P_FLOOR" floor "$PID_floor"
wait_port "$P_NGX" nginx-proxy "$PID_nginx_proxy"
wait_port "$P_HAP" haproxy "$PID_haproxy"
wait_ready "$P_JG_ADMIN" jobgate
wait_ready "$P_JGF_ADMIN" jobgate-fresh
wait_ready "$P_JGA_ADMIN" jobgate-audit

# Cluster mode: a Redis of our own (no persistence: nothing to write, nothing left behind) and
# the jobgate that keeps its limit buckets there.
if [[ $CLUSTER -eq 1 ]]; then
    log "cluster mode: redis-server on :$P_REDIS (no persistence), jobgate with [cluster] on :$P_JGC"
    start redis redis-server --bind 127.0.0.1 --port "$P_REDIS" --save '' --appendonly no \
        --dir "$WORK/tmp" --daemonize no
    wait_port "$P_REDIS" redis "$PID_redis"
    [[ $(redis-cli -p "$P_REDIS" ping 2>/dev/null) == PONG ]] || die "redis-server on :$P_REDIS does not answer PING"
    start jobgate-cluster "$JG" serve -c "$WORK/conf/jobgate-cluster.toml"
    wait_port "$P_JGC" jobgate-cluster "$PID_jobgate_cluster"
    wait_ready "$P_JGC_ADMIN" jobgate-cluster
    for _ in $(seq 1 100); do
        [[ $(metric_value "$P_JGC_ADMIN" jobgate_cluster_up) -eq 1 ]] && break
        sleep 0.1
    done
    [[ $(metric_value "$P_JGC_ADMIN" jobgate_cluster_up) -eq 1 ]] \
        || { cat "$WORK/logs/jobgate-cluster.out" >&2; die "jobgate-cluster: jobgate_cluster_up is not 1 within 10 s"; }
fi

# The processes whose CPU time counts as each target's: nginx = master + workers.
# shellcheck disable=SC2046  # one PID per word
family() { echo "$1" $(pgrep -P "$1" || true); }
PIDS_UPSTREAM=$(family "$PID_upstream")
declare -A URL PIDS ADMIN
URL[direct]="http://127.0.0.1:$P_UP/api/bench";       PIDS[direct]=$PIDS_UPSTREAM
URL[jg_auth]="http://127.0.0.1:$P_JG/api/bench";      PIDS[jg_auth]=$PID_jobgate;       ADMIN[jg_auth]=$P_JG_ADMIN
URL[jg_public]="http://127.0.0.1:$P_JG/public/bench"; PIDS[jg_public]=$PID_jobgate;     ADMIN[jg_public]=$P_JG_ADMIN
URL[jg_limits]="http://127.0.0.1:$P_JG/limited/bench"; PIDS[jg_limits]=$PID_jobgate;    ADMIN[jg_limits]=$P_JG_ADMIN
URL[floor]="http://127.0.0.1:$P_FLOOR/api/bench";     PIDS[floor]=$PID_floor
URL[jg_fresh]="http://127.0.0.1:$P_JGF/api/bench";    PIDS[jg_fresh]=$PID_jobgate_fresh; ADMIN[jg_fresh]=$P_JGF_ADMIN
URL[jg_audit]="http://127.0.0.1:$P_JGA/api/bench";    PIDS[jg_audit]=$PID_jobgate_audit; ADMIN[jg_audit]=$P_JGA_ADMIN
URL[nginx]="http://127.0.0.1:$P_NGX/api/bench";       PIDS[nginx]=$(family "$PID_nginx_proxy")
URL[haproxy]="http://127.0.0.1:$P_HAP/api/bench";     PIDS[haproxy]=$PID_haproxy
# Cluster targets: Redis's CPU and calls are read around their runs too (REDIS_PORT).
declare -A REDIS_PORT
if [[ $CLUSTER -eq 1 ]]; then
    URL[jgc_auth]="http://127.0.0.1:$P_JGC/api/bench";      PIDS[jgc_auth]=$PID_jobgate_cluster
    URL[jgc_limit]="http://127.0.0.1:$P_JGC/limited/bench"; PIDS[jgc_limit]=$PID_jobgate_cluster
    for t in jgc_auth jgc_limit; do ADMIN[$t]=$P_JGC_ADMIN; REDIS_PORT[$t]=$P_REDIS; done
fi

# ---------------------------------------------------------------- sanity checks
FRESH_ONE=$(sed -n "$((TOKEN_COUNT / 2))p" "$WORK/issuer/tokens")
code_of() {  # $1 url, $2 token file or "-" for none; prints "<code> <body>"
    local args=(-s -o "$WORK/tmp/body" -w '%{http_code}' --max-time 5)
    if [[ $2 != - ]]; then args+=(-H "Authorization: Bearer $(cat "$2")"); fi
    local code
    code=$(curl "${args[@]}" "$1" || true)
    printf '%s %s' "$code" "$(head -c 40 "$WORK/tmp/body" 2>/dev/null | tr -d '\n')"
}
printf '%s\n' "$FRESH_ONE" > "$WORK/tmp/fresh-one"
failures=0
check() {  # $1 target, $2 token name ("-" = none), $3 expected code
    local tokfile=-
    case $2 in
        -) ;;
        fresh) tokfile="$WORK/tmp/fresh-one" ;;
        *) tokfile="$WORK/issuer/$2" ;;
    esac
    local got
    got=$(code_of "${URL[$1]}" "$tokfile")
    local code=${got%% *}
    local body=${got#* }
    local verdict=ok
    if [[ $code != "$3" ]]; then verdict=FAIL; failures=$((failures + 1)); fi
    if [[ $3 == 200 && $body != ok* ]]; then verdict="FAIL (body: $body)"; failures=$((failures + 1)); fi
    local shown=$2
    [[ $shown == - ]] && shown="no token"
    printf '  %-10s %-18s expect %s got %s  %s\n' "$1" "$shown" "$3" "$code" "$verdict" >&2
}
log "sanity checks"
check direct - 200
for t in jg_auth jg_fresh jg_audit haproxy; do
    check "$t" token 200
    check "$t" fresh 200
    check "$t" - 401
    check "$t" token-bad-sig 401
    check "$t" token-expired 401
    check "$t" token-wrong-aud 401
    if [[ $t != haproxy || $HAPROXY_FULL -eq 1 ]]; then
        check "$t" token-wrong-owner 403
    else
        check "$t" token-wrong-owner 200   # lean HAProxy checks no rule
    fi
done
check jg_limits token 200
check jg_limits - 401
check jg_limits token-wrong-owner 403
check jg_public - 200
check jg_public token 200
check floor - 200
check floor token 200
check nginx - 200
check nginx token 200
if [[ $CLUSTER -eq 1 ]]; then
    check jgc_auth token 200
    check jgc_auth - 401
    check jgc_limit token 200
    check jgc_limit - 401
    check jgc_limit token-wrong-owner 403
fi
[[ $failures -eq 0 ]] || die "$failures sanity check(s) failed; see above"

# ---------------------------------------------------------------- measurement
cpu_ticks() {  # sum of utime+stime (clock ticks) over the given PIDs
    local total=0 pid line rest
    for pid in "$@"; do
        read -r line < "/proc/$pid/stat" || continue
        rest=${line##*) }
        # shellcheck disable=SC2086
        set -- $rest
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
sys_ticks() {  # sum of stime (clock ticks) over the given PIDs
    local total=0 pid line rest
    for pid in "$@"; do
        read -r line < "/proc/$pid/stat" || continue
        rest=${line##*) }
        # shellcheck disable=SC2086
        set -- $rest
        total=$((total + ${13}))
    done
    echo "$total"
}
machine_ticks() {  # "busy total" from /proc/stat, clock ticks
    local user nice system idle iowait irq softirq steal rest
    read -r _ user nice system idle iowait irq softirq steal rest < /proc/stat
    echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}
cache_counts() {  # "hits misses" of a jobgate instance, from /metrics
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk '
        /^jobgate_auth_duration_seconds_count/ && /cache="hit"/  { h = $NF }
        /^jobgate_auth_duration_seconds_count/ && /cache="miss"/ { m = $NF }
        END { printf "%d %d\n", h, m }'
}

RESULTS="$WORK/results.tsv"
printf 'mode\tround\ttarget\trequests\tduration_us\tp50_us\tp90_us\tp99_us\tmean_us\tmax_us\terr_sock\terr_status\tproxy_ticks\tupstream_ticks\tbusy_ticks\ttotal_ticks\twrk_cpu_s\tcache_hits\tcache_misses\tproxy_sys_ticks\tredis_ticks\tredis_calls\n' > "$RESULTS"

redis_calls() {  # $1 port: scripts run so far (EVALSHA + EVAL: one per rate-limit step)
    redis-cli -p "$1" info commandstats 2>/dev/null | tr -d '\r' \
        | awk -F'[:=,]' '$1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" { n += $3 } END { printf "%d\n", n }'
}

wrk_cpu_seconds() {  # children CPU seconds between two `times` outputs ($1 before, $2 after)
    python3 - "$1" "$2" <<'PY'
import re, sys
def children(path):
    line = open(path).read().splitlines()[1]
    return sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", line))
print(f"{children(sys.argv[2]) - children(sys.argv[1]):.3f}")
PY
}

run_wrk() {  # $1 mode, $2 target, $3 duration; output in $WORK/wrk.out
    local mode=$1 target=$2 duration=$3
    local t=$THREADS c=$CONNS
    [[ $mode == latency ]] && { t=1; c=1; }
    local args=(-t"$t" -c"$c" -d"${duration}s" --timeout 5s -s "$HERE/bench.lua")
    local tokens=""
    case $mode in
        fresh) tokens="$WORK/issuer/tokens" ;;
        *) args+=(-H "Authorization: Bearer $TOKEN") ;;
    esac
    JG_TOKENS=$tokens timeout $((duration + 30)) wrk "${args[@]}" "${URL[$target]}" > "$WORK/wrk.out" 2>&1 || true
}

measure() {  # $1 mode, $2 round, $3 target
    local mode=$1 round=$2 target=$3
    local c0 u0 m0 k0 h0=0 s0=0 c1 u1 m1 k1 h1=0 s1=0
    local redis=${REDIS_PORT[$target]:-} q0=0 q1=0 r0=0 r1=0
    [[ -n ${ADMIN[$target]:-} ]] && read -r h0 s0 < <(cache_counts "${ADMIN[$target]}")
    [[ -n $redis ]] && q0=$(redis_calls "$redis") && r0=$(cpu_ticks "$PID_redis")
    # shellcheck disable=SC2086
    c0=$(cpu_ticks ${PIDS[$target]})
    # shellcheck disable=SC2086
    k0=$(sys_ticks ${PIDS[$target]})
    # shellcheck disable=SC2086
    u0=$(cpu_ticks $PIDS_UPSTREAM); m0=$(machine_ticks)
    times > "$WORK/tmp/times0"
    run_wrk "$mode" "$target" "$DURATION"
    times > "$WORK/tmp/times1"
    # shellcheck disable=SC2086
    c1=$(cpu_ticks ${PIDS[$target]})
    # shellcheck disable=SC2086
    k1=$(sys_ticks ${PIDS[$target]})
    # shellcheck disable=SC2086
    u1=$(cpu_ticks $PIDS_UPSTREAM); m1=$(machine_ticks)
    [[ -n $redis ]] && r1=$(cpu_ticks "$PID_redis") && q1=$(redis_calls "$redis")
    [[ -n ${ADMIN[$target]:-} ]] && read -r h1 s1 < <(cache_counts "${ADMIN[$target]}")
    local line
    line=$(grep '^JGRESULT' "$WORK/wrk.out" || true)
    if [[ -z $line ]]; then
        log "wrk gave no result for $mode/$target round $round:"; cat "$WORK/wrk.out" >&2
        return 0
    fi
    declare -A r=()
    local kv
    for kv in ${line#JGRESULT }; do r[${kv%%=*}]=${kv#*=}; done
    local busy0=${m0% *} total0=${m0#* } busy1=${m1% *} total1=${m1#* }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$mode" "$round" "$target" "${r[requests]}" "${r[duration_us]}" "${r[p50_us]}" "${r[p90_us]}" \
        "${r[p99_us]}" "${r[mean_us]}" "${r[max_us]}" \
        "$((r[err_connect] + r[err_read] + r[err_write] + r[err_timeout]))" "${r[err_status]}" \
        "$((c1 - c0))" "$((u1 - u0))" "$((busy1 - busy0))" "$((total1 - total0))" \
        "$(wrk_cpu_seconds "$WORK/tmp/times0" "$WORK/tmp/times1")" "$((h1 - h0))" "$((s1 - s0))" \
        "$((k1 - k0))" "$((r1 - r0))" "$((q1 - q0))" >> "$RESULTS"
    printf '  %-8s r%-2s %-10s %9.0f req/s  p50 %6s us  p99 %7s us  cpu %6.1f us/req%s\n' \
        "$mode" "$round" "$target" "$(echo "${r[requests]} ${r[duration_us]}" | awk '{print $1 / $2 * 1e6}')" \
        "${r[p50_us]}" "${r[p99_us]}" \
        "$(echo "$((c1 - c0)) ${r[requests]} $CLK_TCK" | awk '{print ($2 > 0) ? $1 * 1e6 / $3 / $2 : 0}')" \
        "$([[ -n $redis ]] && echo "$((r1 - r0)) ${r[requests]} $CLK_TCK" | awk '{printf "  redis %.1f us/req", ($2 > 0) ? $1 * 1e6 / $3 / $2 : 0}')$([[ ${r[err_status]} != 0 ]] && echo "  NON-2xx: ${r[err_status]}")" >&2
    if [[ $target == jg_audit ]]; then : > "$WORK/logs/audit.jsonl"; fi
}

targets_of() {
    case $1 in
        reused) echo "floor jg_auth jg_public nginx haproxy" ;;
        fresh) echo "floor jg_fresh haproxy nginx" ;;
        latency) echo "direct floor jg_auth nginx haproxy" ;;
        limits) echo "jg_auth jg_limits" ;;
        cluster) echo "jgc_auth jgc_limit" ;;
        audit) echo "jg_auth jg_audit" ;;
        memory) ;;  # not a wrk rotation: see "memory mode" below
    esac
}

total_runs=0
for mode in $MODES; do total_runs=$((total_runs + ROUNDS * $(wc -w <<< "$(targets_of "$mode")"))); done
if [[ $total_runs -gt 0 ]]; then
    log "warm-up (2 s per target, not recorded)"
    for mode in $MODES; do
        for target in $(targets_of "$mode"); do
            run_wrk "$mode" "$target" 2
        done
    done
    log "measuring: $total_runs runs of ${DURATION}s (about $((total_runs * (DURATION + 1) / 60 + 1)) min)"
fi
for mode in $MODES; do
    for round in $(seq 1 "$ROUNDS"); do
        for target in $(targets_of "$mode"); do
            measure "$mode" "$round" "$target"
        done
    done
done

# The cluster runs count only if Redis was used throughout: every answer 200 (a 429 or a 503
# would mean refusals, not cost), no Redis call failed or timed out (a failed limit call falls
# back to local buckets, which is cheaper), and Redis still up at the end.
CLUSTER_VALID=1
if [[ $CLUSTER -eq 1 ]]; then
    cluster_up=$(metric_value "$P_JGC_ADMIN" jobgate_cluster_up)
    cluster_errors=$(metric_value "$P_JGC_ADMIN" jobgate_cluster_errors_total)
    cluster_bad=$(awk -F'\t' 'NR > 1 && $1 == "cluster" { n += $11 + $12 } END { printf "%d\n", n }' "$RESULTS")
    cluster_runs=$(awk -F'\t' 'NR > 1 && $1 == "cluster" { n++ } END { printf "%d\n", n }' "$RESULTS")
    log "cluster: jobgate_cluster_up $cluster_up, jobgate_cluster_errors_total $cluster_errors, non-2xx or socket errors $cluster_bad, runs $cluster_runs"
    if [[ $cluster_up -ne 1 || $cluster_errors -ne 0 || $cluster_bad -ne 0 || $cluster_runs -ne $((2 * ROUNDS)) ]]; then
        CLUSTER_VALID=0
    fi
fi

# ---------------------------------------------------------------- memory mode
# jobgate's resident memory (VmRSS, /proc/<pid>/status) in four states, on an instance of
# its own: idle; holding MEM_CONNS idle keep-alive connections (one request answered on each;
# nginx and HAProxy the same, master + workers summed); holding MEM_TOKENS verified tokens in
# its cache; and after 30 % more distinct tokens than the bound, to show the bound holds.
# The table goes to $WORK/memory.md and is appended to the report below.
rss_kib() {  # sum of VmRSS (KiB) over the given PIDs
    local total=0 pid kb
    for pid in "$@"; do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}
fd_count() {  # open file descriptors of a process
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}
stop_started() {  # $1 pid from STARTED_PIDS: TERM, up to 10 s, KILL; then dropped from the list
    local pid=$1 p kept=()
    kill -TERM "$pid" 2>/dev/null || true
    reap "$pid" 100
    for p in "${STARTED_PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
    STARTED_PIDS=("${kept[@]}")
}
thousands() { printf '%s' "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
delta_mib() { awk -v d="$1" 'BEGIN { printf "%+.1f MiB", d / 1024 }'; }
per_unit() {  # $1 KiB, $2 units: "x.x KiB"
    awk -v k="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f KiB", k / n; else printf "—" }'
}
HOLD_PID=""
HOLD_LINE=""
hold_open() {  # $1 label, $2 port: MEM_CONNS idle keep-alive connections, held by memory.py
    local label=$1 port=$2 ready="$WORK/tmp/hold-$1.ready"
    rm -f "$ready"
    # jobgate closes a connection idle for 60 s: the holder lets go after 50 s at the latest.
    # Started directly (no `timeout` wrapper) so that $! is the holder itself and
    # stop_started's KILL reaches it if TERM does not.
    python3 "$HERE/memory.py" hold --port "$port" --path /api/bench \
        --token-file "$WORK/issuer/token" --count "$MEM_CONNS" --ready "$ready" \
        --deadline 40 --hold-seconds 50 > "$WORK/logs/hold-$label.out" 2>&1 &
    HOLD_PID=$!
    STARTED_PIDS+=("$HOLD_PID")
    for _ in $(seq 1 450); do
        [[ -s $ready ]] && break
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -s $ready ]] || { cat "$WORK/logs/hold-$label.out" >&2; die "memory: could not open connections to $label"; }
    HOLD_LINE=$(cat "$ready")
    sleep 1   # let the proxy settle; every connection has had its answer
}
drive_tokens() {  # $1 first line, $2 last line of the memory ring: each token sent once
    local first=$1 last=$2 out="$WORK/tmp/drive-$1.out"
    log "memory: sending tokens $(thousands "$first")–$(thousands "$last") once each (8 connections)"
    timeout -k 10 1800 python3 "$HERE/memory.py" drive --port "$P_JGM" --path /api/bench \
        --tokens "$WORK/memory/tokens" --first "$first" --last "$last" --connections 8 \
        --deadline 1700 > "$out" 2> "$WORK/logs/drive-$1.err" || true
    sed 's/^/  /' "$WORK/logs/drive-$1.err" >&2
    DRIVE_LINE=$(tail -1 "$out")
    log "memory: $DRIVE_LINE"
}
field() { sed -n "s/.*\<$1=\([0-9.]*\).*/\1/p" <<< "$2"; }  # $1 key, $2 "key=value ..." line

if [[ $MEMORY -eq 1 ]]; then
    mem_started=$SECONDS
    MEM_TOTAL=$((MEM_TOKENS * 13 / 10))
    # jobgate rounds token_cache_entries up to a multiple of its 8-way sets (of its 64
    # shards before the lock-free cache): the next multiple of 64 bounds both.
    MEM_CAPACITY=$(( (MEM_TOKENS + 63) / 64 * 64 ))
    log "memory: jobgate with token_cache_entries = $MEM_TOKENS (at most $MEM_CAPACITY) on :$P_JGM"
    start jobgate-memory "$JG" serve -c "$WORK/conf/jobgate-memory.toml"
    wait_port "$P_JGM" jobgate-memory "$PID_jobgate_memory"
    wait_ready "$P_JGM_ADMIN" jobgate-memory
    JGM=$PID_jobgate_memory
    warm_bad=0
    for _ in $(seq 1 10); do
        for spec in "/api/bench $WORK/issuer/token" "/public/bench -"; do
            got=$(code_of "http://127.0.0.1:$P_JGM${spec%% *}" "${spec#* }")
            [[ ${got%% *} == 200 ]] || warm_bad=$((warm_bad + 1))
        done
    done
    [[ $warm_bad -eq 0 ]] || die "memory: $warm_bad of 20 warm-up requests to jobgate-memory were not 200"
    sleep 2
    mem_idle=$(rss_kib "$JGM"); fds_idle=$(fd_count "$JGM")
    log "memory: jobgate idle $(mib "$mem_idle"), $fds_idle fds"

    # 1. idle keep-alive connections: jobgate, then nginx and HAProxy for comparison.
    declare -A CONN_BEFORE CONN_HELD CONN_AFTER CONN_OK CONN_FDS
    for spec in "jobgate:$P_JGM:$JGM" "nginx:$P_NGX:$(family "$PID_nginx_proxy")" "haproxy:$P_HAP:$PID_haproxy"; do
        IFS=: read -r label port pids <<< "$spec"
        # shellcheck disable=SC2086
        CONN_BEFORE[$label]=$(rss_kib $pids)
        log "memory: $MEM_CONNS keep-alive connections to $label"
        hold_open "$label" "$port"
        # shellcheck disable=SC2086
        CONN_HELD[$label]=$(rss_kib $pids)
        CONN_OK[$label]=$(field ok "$HOLD_LINE")
        [[ $label == jobgate ]] && CONN_FDS[$label]=$(fd_count "$JGM")
        stop_started "$HOLD_PID"
        # The proxy sees the closes at once; give its allocator a moment.
        sleep 2
        # shellcheck disable=SC2086
        CONN_AFTER[$label]=$(rss_kib $pids)
        log "memory: $label $(mib "${CONN_BEFORE[$label]}") -> $(mib "${CONN_HELD[$label]}") with $HOLD_LINE -> $(mib "${CONN_AFTER[$label]}") closed"
    done
    fds_closed=$(fd_count "$JGM")

    # 2. MEM_TOKENS distinct tokens, then 30 % more: the cache must stay within its bound.
    mkdir -p "$WORK/memory"
    log "memory: minting $(thousands "$MEM_TOTAL") distinct tokens (about $((MEM_TOTAL * 6 / 10000 + 1)) s on 2 cores)"
    mint_started=$SECONDS
    timeout 1800 python3 "$HERE/mint.py" "$WORK/key/key.pem" "$WORK/memory" \
        --issuer "$ISSUER" --audience "$AUDIENCE" --count "$MEM_TOTAL" --serial-base 1000000 \
        || die "memory: minting the token ring failed"
    mint_seconds=$((SECONDS - mint_started))
    read -r _ misses0 < <(cache_counts "$P_JGM_ADMIN")
    mem_before_tokens=$(rss_kib "$JGM")
    drive_and_read() {  # $1 first, $2 last token line: sends them, then reads RSS and the cache
        drive_tokens "$1" "$2"
        sleep 1
        READ_RSS=$(rss_kib "$JGM")
        READ_ENTRIES=$(metric_value "$P_JGM_ADMIN" jobgate_token_cache_entries)
        read -r _ READ_MISSES < <(cache_counts "$P_JGM_ADMIN")
        log "memory: $(thousands "$READ_ENTRIES") cache entries, RSS $(mib "$READ_RSS")"
    }
    drive_and_read 1 "$MEM_TOKENS"
    drive1=$DRIVE_LINE mem_tokens=$READ_RSS entries_tokens=$READ_ENTRIES misses1=$READ_MISSES
    drive_and_read $((MEM_TOKENS + 1)) "$MEM_TOTAL"
    drive2=$DRIVE_LINE mem_over=$READ_RSS entries_over=$READ_ENTRIES misses2=$READ_MISSES
    stop_started "$JGM"
    rm -rf "$WORK/memory"   # ~230 MB of tokens
    mem_seconds=$((SECONDS - mem_started))

    ok1=$(field ok "$drive1"); ok2=$(field ok "$drive2")
    n2=$((MEM_TOTAL - MEM_TOKENS))
    answers() {  # $1 ok, $2 expected
        if [[ $1 == "$2" ]]; then echo "all $(thousands "$2") answered 200"; else echo "⚠ only $(thousands "${1:-0}") of $(thousands "$2") answered 200"; fi
    }
    conns_check() {  # $1 label
        local ok=${CONN_OK[$1]:-0}
        if [[ $ok == "$MEM_CONNS" ]]; then echo "$(thousands "$ok") answered 200 and stayed open"; else echo "⚠ $(thousands "$ok") of $(thousands "$MEM_CONNS") answered 200 and stayed open"; fi
    }
    if [[ $entries_over -le $MEM_CAPACITY ]]; then bound="bound holds"; else bound="⚠ over the bound"; fi
    c=$(thousands "$MEM_CONNS")
    {
        echo
        echo "### Memory (jobgate RSS)"
        echo
        echo "| state | RSS | change | per unit | check |"
        echo "|---|---|---|---|---|"
        echo "| jobgate idle (after 20 requests) | $(mib "$mem_idle") | — | — | $fds_idle fds |"
        echo "| jobgate, $c idle keep-alive connections | $(mib "${CONN_HELD[jobgate]}") | $(delta_mib $((CONN_HELD[jobgate] - CONN_BEFORE[jobgate]))) | $(per_unit $((CONN_HELD[jobgate] - CONN_BEFORE[jobgate])) "${CONN_OK[jobgate]:-0}") per connection | $(conns_check jobgate); fds $fds_idle → $(thousands "${CONN_FDS[jobgate]}") |"
        echo "| jobgate, those connections closed (2 s later) | $(mib "${CONN_AFTER[jobgate]}") | $(delta_mib $((CONN_AFTER[jobgate] - mem_idle))) vs idle | — | fds back to $fds_closed |"
        echo "| jobgate, $(thousands "$MEM_TOKENS") distinct tokens verified | $(mib "$mem_tokens") | $(delta_mib $((mem_tokens - mem_before_tokens))) | $(per_unit $((mem_tokens - mem_before_tokens)) "$entries_tokens") per cached token | $(answers "$ok1" "$MEM_TOKENS"), $(thousands $((misses1 - misses0))) cache misses; $(thousands "$entries_tokens") entries held |"
        echo "| jobgate, $(thousands "$n2") more distinct tokens ($(thousands "$MEM_TOTAL") in all) | $(mib "$mem_over") | $(delta_mib $((mem_over - mem_tokens))) | — | $(answers "$ok2" "$n2"), $(thousands $((misses2 - misses1))) cache misses; $(thousands "$entries_over") entries ≤ $(thousands "$MEM_CAPACITY"): $bound |"
        echo "| nginx (master + workers), $c idle keep-alive connections | $(mib "${CONN_HELD[nginx]}") | $(delta_mib $((CONN_HELD[nginx] - CONN_BEFORE[nginx]))) | $(per_unit $((CONN_HELD[nginx] - CONN_BEFORE[nginx])) "${CONN_OK[nginx]:-0}") per connection | $(conns_check nginx); $(mib "${CONN_AFTER[nginx]}") once closed |"
        echo "| HAProxy, $c idle keep-alive connections | $(mib "${CONN_HELD[haproxy]}") | $(delta_mib $((CONN_HELD[haproxy] - CONN_BEFORE[haproxy]))) | $(per_unit $((CONN_HELD[haproxy] - CONN_BEFORE[haproxy])) "${CONN_OK[haproxy]:-0}") per connection | $(conns_check haproxy); $(mib "${CONN_AFTER[haproxy]}") once closed |"
        echo
        echo "Notes: VmRSS from /proc/<pid>/status (nginx: master + workers summed); $WORKERS worker each."
        echo "Connections: one GET /api/bench with the reused token on each (jobgate and HAProxy verify it),"
        echo "answer read in full, then held idle (jobgate closes keep-alive connections idle for 60 s; the"
        echo "reading is taken within seconds); change = RSS held − RSS just before opening them. Kernel socket"
        echo "buffers are in no process's RSS; nginx and HAProxy free an idle connection's buffers (nginx also"
        echo "preallocates its connection slots), so theirs is near 0."
        echo "Tokens: change and per cached token = (RSS after the tokens − RSS just before them) ÷ entries"
        echo "held (\`jobgate_token_cache_entries\`). \`token_cache_entries = $(thousands "$MEM_TOKENS")\`, which jobgate rounds up to"
        echo "at most $(thousands "$MEM_CAPACITY"); its cache is split in parts picked by the token's digest (shards, or sets)"
        echo "that evict on their own when full, so it holds somewhat fewer entries than tokens sent."
        echo "Memory mode took $mem_seconds s, of which $mint_seconds s minting $(thousands "$MEM_TOTAL") RS256 tokens and"
        echo "$(field seconds "$drive1") + $(field seconds "$drive2") s sending them."
    } > "$WORK/memory.md"
fi

# ---------------------------------------------------------------- report
jg_version=$("$JG" --version 2>/dev/null | head -1 || echo jobgate)
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $commit != unknown && -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit="$commit+uncommitted changes"
fi
cat > "$WORK/meta.env" <<EOF
nproc=$(nproc)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
kernel=$(uname -r)
nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')
haproxy=$(haproxy -v 2>&1 | head -1 | awk '{print $3}')
wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')
jobgate=$jg_version ($commit)
clk_tck=$CLK_TCK
rounds=$ROUNDS
duration=$DURATION
threads=$THREADS
connections=$CONNS
workers=$WORKERS
tokens=$TOKEN_COUNT
haproxy_config=$([[ $HAPROXY_FULL -eq 1 ]] && echo full || echo lean)
EOF
if [[ $CLUSTER -eq 1 ]]; then
    cat >> "$WORK/meta.env" <<EOF
redis=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
cluster_up=$cluster_up
cluster_errors=$cluster_errors
cluster_bad=$cluster_bad
EOF
fi
python3 "$HERE/report.py" "$RESULTS" "$WORK/meta.env" | tee "$WORK/table.md"
if [[ -s $WORK/memory.md ]]; then tee -a "$WORK/table.md" < "$WORK/memory.md"; fi

# ---------------------------------------------------------------- optional profile
if [[ $PERF -eq 1 ]]; then
    if ! perf record -q -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
        log "perf cannot record here; skipping --perf"
    else
        for spec in reused:jg_auth fresh:jg_fresh; do
            mode=${spec%%:*}; target=${spec#*:}
            log "perf: $mode/$target"
            pid=${PIDS[$target]}
            data="$WORK/tmp/perf-$target.data"
            timeout $((DURATION + 60)) perf record -q -F 499 -e cpu-clock --call-graph dwarf,16384 -p "$pid" \
                -o "$data" -- sleep "$DURATION" > /dev/null 2>&1 &
            perf_pid=$!
            sleep 0.2
            run_wrk "$mode" "$target" "$DURATION"
            wait "$perf_pid" || true
            {
                echo "-- self time by object"
                perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null \
                    | grep -v '^#' | grep -v '^$' | head -8 || true
                echo "-- self time by symbol (>= 0.7 %)"
                perf report -i "$data" --no-children --sort sym --stdio -g none --percent-limit 0.7 2>/dev/null \
                    | grep -v '^#' | grep -v '^$' | sed -E 's/ +- +- *$//' | cut -c1-150 | head -30 || true
                echo "-- inclusive time of selected functions"
                perf report -i "$data" --children --sort sym --stdio -g none --percent-limit 0.3 2>/dev/null \
                    | grep -E '\] (jobgate::[a-z_:]+|<jobgate::proxy::Gateway as [^ ]+>::[a-z_]+::\{\{closure\}\}|pingora_http::insert_header_value|pingora_core::connectors::http::Connector<C>::release_http_session::\{\{closure\}\}|__libc_send|__libc_recv|__GI___libc_malloc|__GI___libc_free|aws_lc_0_[0-9_]+SHA256|aws_lc_0_[0-9_]+RSA_verify|serde_json::de::from_trait)' \
                    | awk '{ key = substr($0, index($0, "[")) } !seen[key]++ { $2 = ""; print }' | sed -E 's/ +- +- *$//' | cut -c1-150 | head -30 || true
            } > "$WORK/perf-$target.txt"
            echo; echo "### perf, $mode / $target (cpu-clock samples of the jobgate process, % of its CPU time)"
            echo '```'; cat "$WORK/perf-$target.txt"; echo '```'
            rm -f "$data"
        done
    fi
fi

# ---------------------------------------------------------------- optional callgrind
# Each proxy runs once more under valgrind on its own port, with one wrk connection for a
# few seconds; callgrind's counters are zeroed before and dumped after each phase, so the
# count is the proxy's user-space instructions (kernel excluded) for exactly that phase.
if [[ $CALLGRIND -eq 1 ]]; then
    if ! command -v valgrind >/dev/null 2>&1; then
        if [[ $EUID -eq 0 ]]; then
            timeout 600 apt-get install -y -qq valgrind >/dev/null || true
        fi
    fi
    if ! command -v valgrind >/dev/null 2>&1; then
        log "valgrind not available; skipping --callgrind"
    else
        cg_phase_seconds=4
        declare -A CG_IR
        cg_start() {  # $1 name, rest: command; waits until $url answers 200
            local name=$1; shift
            valgrind --tool=callgrind --callgrind-out-file="$WORK/tmp/cg-$name.%p" "$@" \
                > "$WORK/logs/callgrind-$name.out" 2>&1 &
            CG_PID=$!
            STARTED_PIDS+=("$CG_PID")
        }
        cg_wait() {  # $1 url, $2 token file or -
            local code
            for _ in $(seq 1 120); do
                code=$(code_of "$1" "$2"); code=${code%% *}
                [[ $code == 200 ]] && return 0
                kill -0 "$CG_PID" 2>/dev/null || break
                sleep 0.5
            done
            log "callgrind target at $1 did not come up"; return 1
        }
        cg_stop() {
            kill -TERM "$CG_PID" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$CG_PID" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$CG_PID" 2>/dev/null || true
            wait "$CG_PID" 2>/dev/null || true
        }
        cg_phase() {  # $1 label, $2 url, $3 mode (reused|fresh)
            local label=$1 url=$2 mode=$3 tokens="" args=()
            [[ $mode == fresh ]] && tokens="$WORK/issuer/tokens" || args=(-H "Authorization: Bearer $TOKEN")
            callgrind_control -z "$CG_PID" > /dev/null 2>&1 || true
            JG_TOKENS=$tokens timeout $((cg_phase_seconds + 30)) wrk -t1 -c1 -d"${cg_phase_seconds}s" --timeout 10s \
                -s "$HERE/bench.lua" "${args[@]}" "$url" > "$WORK/tmp/cg-wrk-$label.txt" 2>&1 || true
            callgrind_control -d "$label" "$CG_PID" > /dev/null 2>&1 || true
            sleep 0.5
            local dump requests
            dump=$(grep -l "^desc: Trigger: dump $label\$" "$WORK"/tmp/cg-*.*.* 2>/dev/null | head -1 || true)
            # shellcheck disable=SC2012  # newest file; the names are ours
            [[ -z $dump ]] && dump=$(ls -t "$WORK"/tmp/cg-*.*.* 2>/dev/null | head -1 || true)
            requests=$(grep -o 'requests=[0-9]*' "$WORK/tmp/cg-wrk-$label.txt" | cut -d= -f2 || true)
            if [[ -z $dump || -z $requests || $requests -eq 0 ]]; then
                log "callgrind phase $label gave no data"; return 0
            fi
            local total
            total=$(grep -m1 -E '^(summary|totals):' "$dump" | awk '{print $2}')
            CG_IR[$label]=$((total / requests))
            # "Ir (pct) file:function [object]" lines; a function appears once per source
            # file that it inlines, so keep the largest count per function.
            callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null \
                | awk -v n="$requests" '
                    /^ *[0-9,]+ +\(/ {
                        ir = $1; gsub(",", "", ir)
                        line = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line)
                        sub(/ \[[^]]*\]$/, "", line)
                        sub(/ \([0-9,]+x\)$/, "", line)
                        sub(/ \[[^]]*\]$/, "", line)
                        fn = substr(line, index(line, ":") + 1)
                        if (fn ~ /jobgate::|jsonwebtoken|RSA_verify$|sha256_digest$|insert_header_value$|serde_json::de::from_trait$|__rust_alloc$|__rust_dealloc$|process_request|proxy_to_upstream|release_http_session/ && ir + 0 > best[fn] + 0)
                            best[fn] = ir
                    }
                    END { for (fn in best) printf "%9.0f  %s\n", best[fn] / n, fn }' \
                | sort -rn > "$WORK/tmp/cg-lines.txt" || true
            head -40 "$WORK/tmp/cg-lines.txt" > "$WORK/callgrind-$label.txt"
            rm -f "$dump"
        }

        log "callgrind: nginx proxy"
        sed -e "s/^master_process on;/master_process off;/" -e "s/127.0.0.1:$P_NGX;/127.0.0.1:$P_CG;/" \
            -e "s#pid $WORK/run/nginx-proxy.pid#pid $WORK/run/cg-nginx.pid#" \
            "$WORK/conf/nginx-proxy.conf" > "$WORK/conf/cg-nginx.conf"
        cg_start nginx nginx -p "$WORK/" -e "$WORK/logs/cg-nginx-early.log" -c "$WORK/conf/cg-nginx.conf"
        cg_wait "http://127.0.0.1:$P_CG/api/bench" - && cg_phase nginx "http://127.0.0.1:$P_CG/api/bench" reused
        cg_stop

        log "callgrind: floor (bare Pingora)"
        cg_start floor "$FLOOR" "127.0.0.1:$P_CG" "127.0.0.1:$P_UP" 1
        cg_wait "http://127.0.0.1:$P_CG/api/bench" - && cg_phase floor "http://127.0.0.1:$P_CG/api/bench" reused
        cg_stop

        log "callgrind: haproxy"
        sed -e "s/127.0.0.1:$P_HAP\$/127.0.0.1:$P_CG/" "$WORK/conf/haproxy.cfg" > "$WORK/conf/cg-haproxy.cfg"
        cg_start haproxy haproxy -db -f "$WORK/conf/cg-haproxy.cfg"
        cg_wait "http://127.0.0.1:$P_CG/api/bench" "$WORK/issuer/token" \
            && cg_phase haproxy "http://127.0.0.1:$P_CG/api/bench" reused
        cg_stop

        log "callgrind: jobgate (public, authenticated cached, two limits, authenticated fresh)"
        sed -e "s/127.0.0.1:$P_JGF\"/127.0.0.1:$P_CG\"/" -e "s/127.0.0.1:$P_JGF_ADMIN\"/127.0.0.1:$P_CG_ADMIN\"/" \
            "$WORK/conf/jobgate-fresh.toml" > "$WORK/conf/cg-jobgate-fresh.toml"
        sed -e "s/127.0.0.1:$P_JG\"/127.0.0.1:$P_CG\"/" -e "s/127.0.0.1:$P_JG_ADMIN\"/127.0.0.1:$P_CG_ADMIN\"/" \
            "$WORK/conf/jobgate.toml" > "$WORK/conf/cg-jobgate.toml"
        cg_start jobgate "$JG" serve -c "$WORK/conf/cg-jobgate.toml"
        if cg_wait "http://127.0.0.1:$P_CG/api/bench" "$WORK/issuer/token"; then
            cg_phase jg_public "http://127.0.0.1:$P_CG/public/bench" reused
            cg_phase jg_auth "http://127.0.0.1:$P_CG/api/bench" reused
            cg_phase jg_limits "http://127.0.0.1:$P_CG/limited/bench" reused
        fi
        cg_stop
        cg_start jobgate-fresh "$JG" serve -c "$WORK/conf/cg-jobgate-fresh.toml"
        if cg_wait "http://127.0.0.1:$P_CG/api/bench" "$WORK/issuer/token"; then
            cg_phase jg_fresh "http://127.0.0.1:$P_CG/api/bench" fresh
        fi
        cg_stop

        echo
        echo "### User-space instructions per request (callgrind, wrk -t1 -c1, ${cg_phase_seconds} s per phase)"
        echo
        echo "| target | instructions / request | ÷ floor | goal |"
        echo "|---|---|---|---|"
        floor_ir=${CG_IR[floor]:-0}
        for label in floor nginx haproxy jg_public jg_auth jg_limits jg_fresh; do
            [[ -n ${CG_IR[$label]:-} ]] || continue
            ratio="—"
            [[ $floor_ir -gt 0 ]] && ratio=$(awk -v a="${CG_IR[$label]}" -v b="$floor_ir" 'BEGIN { printf "%.2f", a / b }')
            case $label in
                jg_public) goal="≤ 1.05" ;;
                jg_auth) goal="≤ 1.35" ;;
                *) goal="—" ;;
            esac
            printf '| %s | %s | %s | %s |\n' "$label" "$(printf "%'d" "${CG_IR[$label]}")" "$ratio" "$goal"
        done
        if [[ -n ${CG_IR[jg_limits]:-} && -n ${CG_IR[jg_auth]:-} ]]; then
            echo
            echo "Two limits vs none (jg_limits ÷ jg_auth, same process and token): $(awk -v a="${CG_IR[jg_limits]}" -v b="${CG_IR[jg_auth]}" 'BEGIN { printf "%.3f", a / b }') (goal ≤ 1.05)."
        fi
        echo
        echo "Kernel time (TCP, syscalls) is not counted. Under valgrind, aws-lc's SHA-256 runs its AVX"
        echo "code path instead of the SHA-NI one, so the RS256 check of a fresh token counts more than natively."
        for label in jg_auth jg_fresh; do
            if [[ -s $WORK/callgrind-$label.txt ]]; then
                echo; echo "#### $label: inclusive instructions per request, selected functions"
                echo '```'; cat "$WORK/callgrind-$label.txt"; echo '```'
            fi
        done
    fi
fi

if [[ $CLUSTER_VALID -eq 0 ]]; then
    die "cluster mode: run not valid (jobgate_cluster_up $cluster_up, jobgate_cluster_errors_total $cluster_errors, non-2xx or socket errors $cluster_bad, $cluster_runs of $((2 * ROUNDS)) runs): its figures do not measure Redis-backed limits"
fi
