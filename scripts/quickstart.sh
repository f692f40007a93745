#!/usr/bin/env bash
# Starts a local agent in sandbox mode: no root, no nginx needed. Files go under
# target/quickstart/sandbox; commands are recorded, not run.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/quickstart
mkdir -p "$dir"
umask 077
if [ ! -s "$dir/agent-token" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/agent-token"
fi
port=${AGENT_PORT:-50000}
cat > "$dir/config.env" <<CONF
AGENT_TOKEN=$(cat "$dir/agent-token")
AGENT_BIND=127.0.0.1
AGENT_PORT=$port
AGENT_MODE=sandbox
AGENT_SANDBOX_ROOT=$PWD/$dir/sandbox
CONF
cargo build --release --locked -p enconf-bin --bin enconf-agent
echo "agent: http://127.0.0.1:$port  (token in $dir/agent-token)"
echo "try:   curl -H \"Authorization: Bearer \$(cat $dir/agent-token)\" http://127.0.0.1:$port/v1/health"
exec target/release/enconf-agent --config "$dir/config.env"
