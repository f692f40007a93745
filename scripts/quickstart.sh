#!/usr/bin/env bash
# Starts the controller (embedded redb store) and one local agent in sandbox mode, registered as
# the single server with all five roles. No root and no nginx needed: the agent writes its files
# under target/quickstart/sandbox and records the commands it would run.
# Stop both with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/quickstart
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
if [ ! -s "$dir/agent-token" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/agent-token"
fi
# Whether a loopback port can be listened on (python3 tries; without it, assume so and let
# the binaries say what they could not bind).
port_free() {
    command -v python3 >/dev/null || return 0
    python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# 50000 is the agent's port everywhere, but it sits inside Linux's ephemeral range
# (32768-60999): any outgoing connection may hold it for a while.
if [ -n "${AGENT_PORT:-}" ]; then
    agent_port=$AGENT_PORT
    port_free "$agent_port" || { echo "port $agent_port (AGENT_PORT) is in use: choose another, e.g. AGENT_PORT=50001 $0" >&2; exit 1; }
elif port_free 50000; then
    agent_port=50000
else
    agent_port=$(free_port)
    echo "port 50000 is in use: the agent listens on $agent_port instead (set AGENT_PORT to choose)" >&2
fi
bind=${ENCONF_BIND:-127.0.0.1:8080}
port_free "${bind##*:}" || { echo "${bind} is in use: choose another address, e.g. ENCONF_BIND=127.0.0.1:8081 $0" >&2; exit 1; }
cat > "$dir/config.env" <<CONF
AGENT_TOKEN=$(cat "$dir/agent-token")
AGENT_BIND=127.0.0.1
AGENT_PORT=$agent_port
AGENT_MODE=sandbox
AGENT_SANDBOX_ROOT=$PWD/$dir/sandbox
AGENT_ROLES=web,mail,dns,db,backup
CONF
cargo build --release --locked -p enconf-bin --bins

target/release/enconf-agent --config "$dir/config.env" 2> "$dir/agent.log" &
agent_pid=$!
trap 'kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q listening "$dir/agent.log" && break
    kill -0 "$agent_pid" 2>/dev/null || { cat "$dir/agent.log" >&2; exit 1; }
    sleep 0.1
done

cat <<BANNER
enconf is starting:
  controller   http://$bind   (Management API; OpenAPI at /api/v1/openapi.json)
  admin token  $PWD/$dir/controller/admin-token   (generated at first start, mode 0600)
  agent        http://127.0.0.1:$agent_port   (sandbox mode; log in $dir/agent.log)
try:
  curl -H "Authorization: Bearer \$(cat $dir/controller/admin-token)" http://$bind/api/v1/servers
BANNER

ENCONF_DATA_DIR="$PWD/$dir/controller" ENCONF_BIND="$bind" target/release/enconf-controller \
    --local-agent-url "http://127.0.0.1:$agent_port" \
    --local-agent-token-file "$dir/agent-token"
