#!/usr/bin/env bash
# Backup bench (not a test): two release enconf-agents in sandbox mode on loopback, one with
# the web role (the account's site: SIZE_MB of random data in FILES files), one with the
# backup role (its rclone serve restic --append-only endpoint), driven over the agent API as
# the controller drives them:
#   1. the first backup of the site (the baseline): time, bytes read, bytes added;
#   2. CHANGE_PCT percent of the files rewritten with new random data, then the second
#      backup: time and bytes added, beside the first.
# Needs restic, rclone, python3 (bcrypt through the crypt module), curl.
# Usage: benches/scale/backup-scale.sh [SIZE_MB] [FILES] [CHANGE_PCT]   (KEEP=1 keeps the directory)
set -euo pipefail
SIZE_MB=${1:-1024}
FILES=${2:-10000}
CHANGE_PCT=${3:-1}
cd "$(dirname "$0")/../.."
cargo build --release --locked --quiet -p enconf-bin --bin enconf-agent
ROOT=$(mktemp -d /tmp/enconf-backup-scale.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
TOKEN=$(hex)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept: $ROOT"; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT

WEB_PORT=$(free_port); BACKUP_PORT=$(free_port); REST_PORT=$(free_port)
start_agent() { # name port roles extra...
    local name=$1 port=$2 roles=$3; shift 3
    mkdir -p "$ROOT/$name"
    {
        echo "AGENT_TOKEN=$TOKEN"; echo "AGENT_BIND=127.0.0.1"; echo "AGENT_PORT=$port"
        echo "AGENT_MODE=sandbox"; echo "AGENT_SANDBOX_ROOT=$ROOT/$name/box"; echo "AGENT_ROLES=$roles"
        for kv in "$@"; do echo "$kv"; done
    } > "$ROOT/$name/config.env"
    RUST_LOG=warn target/release/enconf-agent --config "$ROOT/$name/config.env" >"$ROOT/$name/agent.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/v1/health" >/dev/null && return; sleep 0.1; done
    echo "agent $name did not start"; cat "$ROOT/$name/agent.log"; exit 1
}
call() { # method port path [body]
    curl -sf -X "$1" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        ${4:+--data "$4"} "http://127.0.0.1:$2$3"
}
start_agent web "$WEB_PORT" web
start_agent backup "$BACKUP_PORT" backup "AGENT_BACKUP_LISTEN=127.0.0.1:$REST_PORT" "AGENT_BACKUP_URL=http://127.0.0.1:$REST_PORT"

ACCESS=$(hex); KEY=$(hex)
HASH=$(python3 -W ignore -c 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32)))' "$ACCESS")
call PUT "$WEB_PORT" /v1/accounts/bench '{"domains":["bench.example"],"roles":["web"]}' >/dev/null
call PUT "$BACKUP_PORT" /v1/accounts/bench "{\"domains\":[\"bench.example\"],\"roles\":[\"backup\"],\"backup\":{\"access_hash\":\"$HASH\"}}" >/dev/null
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$REST_PORT) 2>/dev/null && break; sleep 0.1; done
URL=$(call GET "$BACKUP_PORT" /v1/backup/bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')

SITE=$ROOT/web/box/var/www/bench/public_html/data
mkdir -p "$SITE"
PER_KB=$(( SIZE_MB * 1024 / FILES ))
echo "writing $FILES files of $PER_KB KiB ($SIZE_MB MiB) ..."
python3 - "$SITE" "$FILES" "$PER_KB" <<'PY'
import os, sys
site, files, kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    d = os.path.join(site, f"d{i // 100:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(kb * 1024))
PY

backup() { # set → "seconds size added"
    local body="{\"repository\":{\"url\":\"$URL\",\"access\":\"$ACCESS\",\"key\":\"$KEY\"},\"set\":$1,\"files\":true}"
    local start end task status
    start=$(date +%s.%N)
    task=$(call POST "$WEB_PORT" /v1/backup/bench/run "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    while :; do
        status=$(call GET "$WEB_PORT" "/v1/tasks/$task")
        case "$status" in *'"status":"running"'*) sleep 0.2 ;; *) break ;; esac
    done
    end=$(date +%s.%N)
    case "$status" in *'"status":"succeeded"'*) ;; *) echo "backup failed: $status" >&2; exit 1 ;; esac
    python3 -c 'import json,sys; t=json.loads(sys.argv[1]); print("%.2f %d %d" % (float(sys.argv[3]) - float(sys.argv[2]), t["size_bytes"], t["bytes_added"]))' "$status" "$start" "$end"
}

read -r T1 S1 A1 < <(backup 1)
CHANGED=$(( FILES * CHANGE_PCT / 100 ))
python3 - "$SITE" "$FILES" "$PER_KB" "$CHANGED" <<'PY'
import os, sys
site, files, kb, changed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
step = max(1, files // max(1, changed))
for n, i in enumerate(range(0, files, step)):
    if n >= changed:
        break
    with open(os.path.join(site, f"d{i // 100:03d}", f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(kb * 1024))
PY
read -r T2 S2 A2 < <(backup 2)
python3 - "$T1" "$S1" "$A1" "$T2" "$S2" "$A2" "$CHANGED" <<'PY'
import sys
t1, s1, a1, t2, s2, a2, changed = sys.argv[1:]
t1, t2 = float(t1), float(t2)
s1, a1, s2, a2 = int(s1), int(a1), int(s2), int(a2)
mib = lambda b: f"{b / 1048576:.1f} MiB"
print(f"first backup (baseline): {t1:.2f} s, read {mib(s1)}, added to the repository {mib(a1)}")
print(f"after {changed} files changed: {t2:.2f} s, read {mib(s2)}, added {mib(a2)}")
print(f"ratio second/first: time {t2 / t1:.3f}, bytes added {a2 / max(a1, 1):.4f}")
PY
du -sh "$ROOT/backup/box/var/lib/netcell-webpanel-agent/backups/bench" | sed 's/^/repository on the backup server: /'
