#!/usr/bin/env bash
# Scale bench (not a test): a real nginx and PHP-FPM on loopback and the release enconf-agent.
#   1. N accounts put in one batch over HTTP (target for N=10000: <= 30 s);
#   2. one more account put on the server that now holds N (target: answered in <= 1 s).
# Needs root, nginx and php-fpm. Usage: benches/scale/agent-scale.sh [N]   (default 10000)
# Creates users encb0..encbN-1 and removes them at the end: run it on a dedicated machine.
# FRESH_FS=1 puts the agent's files on a new ext4 filesystem (a loop device): runs then do
# not depend on the ones before. Without it, a run within five minutes of another is slower:
# ext4 skips inodes freed that recently when it creates files (measured here: 38% of the
# agent's CPU time in a batch that followed another by a minute).
set -euo pipefail
N=${1:-10000}
cd "$(dirname "$0")/../.."
cargo build --release --locked -p enconf-bin --bin enconf-agent >/dev/null
PHP=$(ls /usr/sbin/php-fpm* | sed 's/.*php-fpm//' | sort -V | tail -1)
ROOT=$(mktemp -d /tmp/enconf-scale.XXXXXX)
if [ "${FRESH_FS:-0}" = 1 ]; then
    truncate -s 8G "$ROOT.img"
    mkfs.ext4 -q -F "$ROOT.img"
    mount -o loop "$ROOT.img" "$ROOT"
fi
chmod 755 "$ROOT"
mkdir -p "$ROOT"/{log,run,sites,nginx-tmp,state} "$ROOT/php/$PHP/pool.d"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WEB=$(free_port); API=$(free_port)
TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

cat > "$ROOT/nginx.conf" <<CONF
user www-data;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $ROOT/nginx.pid;
error_log $ROOT/log/nginx-error.log;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $ROOT/nginx-tmp/body;
    fastcgi_temp_path $ROOT/nginx-tmp/fastcgi;
    proxy_temp_path $ROOT/nginx-tmp/proxy;
    uwsgi_temp_path $ROOT/nginx-tmp/uwsgi;
    scgi_temp_path $ROOT/nginx-tmp/scgi;
    server { listen $WEB default_server; return 404; }
    include $ROOT/sites/*.conf;
}
CONF
cat > "$ROOT/php-fpm.conf" <<CONF
[global]
pid = $ROOT/php/$PHP/fpm.pid
error_log = $ROOT/log/php-fpm.log
include = $ROOT/php/$PHP/pool.d/*.conf
[enconf-scale-base]
user = www-data
group = www-data
listen = $ROOT/run/base.sock
pm = ondemand
pm.max_children = 1
CONF
cat > "$ROOT/config.env" <<CONF
AGENT_TOKEN=$TOKEN
AGENT_BIND=127.0.0.1
AGENT_PORT=$API
AGENT_STATE_DIR=$ROOT/state
AGENT_NGINX_SITES_DIR=$ROOT/sites
AGENT_NGINX_PID_FILE=$ROOT/nginx.pid
AGENT_NGINX_LOG_DIR=$ROOT/log
AGENT_HTTP_PORT=$WEB
AGENT_PHP_DEFAULT_VERSION=$PHP
AGENT_PHP_FPM_POOL_DIR=$ROOT/php/{version}/pool.d
AGENT_PHP_FPM_PID_FILE=$ROOT/php/{version}/fpm.pid
AGENT_PHP_FPM_SOCKET_DIR=$ROOT/run
AGENT_WEB_ROOT_BASE=$ROOT/www
CONF

ulimit -n "$(ulimit -Hn)"
nginx -c "$ROOT/nginx.conf" -e "$ROOT/log/nginx-error.log"
"/usr/sbin/php-fpm$PHP" -y "$ROOT/php-fpm.conf"
target/release/enconf-agent --config "$ROOT/config.env" 2>"$ROOT/log/agent.log" &
AGENT=$!
cleanup() {
    local pids
    pids="$AGENT $(cat "$ROOT/nginx.pid" "$ROOT/php/$PHP/fpm.pid" 2>/dev/null | tr '\n' ' ')"
    kill -TERM "$AGENT" 2>/dev/null || true
    kill -QUIT "$(cat "$ROOT/nginx.pid")" 2>/dev/null || true
    kill -TERM "$(cat "$ROOT/php/$PHP/fpm.pid")" 2>/dev/null || true
    # Gone before their files are (and before the filesystem is unmounted).
    for _ in $(seq 100); do
        local alive=0
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    # userdel rewrites the databases per user (about 150 ms each at 10,000 users): on this
    # dedicated bench machine the encb* lines are removed in one pass instead.
    for f in passwd shadow group gshadow; do sed -i '/^encb[0-9a-z]*:/d' "/etc/$f"; done
    if [ "${FRESH_FS:-0}" = 1 ]; then
        umount "$ROOT" && rm -f "$ROOT.img" && rmdir "$ROOT"
    else
        rm -rf "$ROOT"
    fi
    sync
}
trap cleanup EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$API/" && break; sleep 0.1; done

python3 - "$N" > "$ROOT/batch.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"accounts": [{"username": f"encb{i}", "domains": [f"site{i}.scale.test", f"www.site{i}.scale.test"]} for i in range(n)]}))
PY
# Start from a quiet filesystem (an earlier run's clean-up may still be written back).
sync
put() { curl -s -o "$ROOT/answer" -w '%{http_code} %{time_total}\n' -X PUT -H "Authorization: Bearer $TOKEN" --data-binary "@$2" "http://127.0.0.1:$API$1"; }

read -r code secs < <(put /v1/accounts "$ROOT/batch.json")
echo "batch of $N accounts: HTTP $code in ${secs}s: $(cat "$ROOT/answer")"
echo '{"domains": ["extra.scale.test"]}' > "$ROOT/one.json"
read -r code secs < <(put /v1/accounts/encbextra "$ROOT/one.json")
echo "one more account on a server with $N: HTTP $code in ${secs}s: $(cat "$ROOT/answer")"
userdel -f encbextra 2>/dev/null || true
last=$((N - 1))
echo "served" > "$ROOT/www/encb$last/public/index.html"
# nginx re-reads its whole configuration on a reload: poll until the new workers serve.
for _ in $(seq 600); do
    got=$(curl -s -H "Host: site$last.scale.test" "http://127.0.0.1:$WEB/")
    [ "$got" = served ] && break
    sleep 0.1
done
echo "GET http://site$last.scale.test/ -> $got"
start=$(date +%s.%N); nginx -t -q -c "$ROOT/nginx.conf" -e "$ROOT/log/nginx-error.log"; end=$(date +%s.%N)
echo "pwck -r: $(pwck -rq 2>&1 | grep -c 'encb') problems with the new users; grpck -r exit $(grpck -r >/dev/null 2>&1; echo $?)"
grep -E "prepared|applied|put" "$ROOT/log/agent.log" | tail -8 | sed 's/^[^ ]* *//'
echo "full nginx -t over $N vhosts: $(python3 -c "print(round($end-$start,2))")s (what one validation per site would cost each time)"
