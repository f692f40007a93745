#!/usr/bin/env bash
# DNS scale bench (not a test): two release enconf-agents serving the dns role, each with its
# own real PowerDNS (gsqlite3) on a loopback port, as the controller drives them (the same
# account put to each dns server in turn).
#   1. baseline: one more record in an account's zone, live on both servers (dig), with the
#      servers holding only that zone;
#   2. CREATE zones (default 200) created through the agent in one batch: the cost per zone;
#   3. ZONES zones (default 10,000) loaded into each PowerDNS (SQL, the bulk way in), then
#      the same one-more-record measurement: the time until both servers answer it, beside
#      the baseline (target: <= 1 s).
# Needs root, pdns-server, pdns-backend-sqlite3, sqlite3, dnsutils.
# Usage: benches/scale/dns-scale.sh [ZONES] [CREATE]   (KEEP=1 keeps the directory)
set -euo pipefail
ZONES=${1:-10000}
CREATE=${2:-200}
cd "$(dirname "$0")/../.."
cargo build --release --locked --quiet -p enconf-bin --bin enconf-agent
ROOT=$(mktemp -d /tmp/enconf-dns-scale.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept: $ROOT"; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT

for n in 1 2; do
    D=$ROOT/pdns$n
    mkdir -p "$D" "$ROOT/agent$n/state"
    sqlite3 "$D/pdns.sqlite3" < /usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql
    DNS_PORT=$(free_port); API=$(free_port)
    cat > "$D/pdns.conf" <<CONF
launch=gsqlite3
gsqlite3-database=$D/pdns.sqlite3
gsqlite3-dnssec=yes
local-address=127.0.0.1
local-port=$DNS_PORT
socket-dir=$D
disable-syslog=yes
security-poll-suffix=
CONF
    pdns_server --config-dir="$D" --daemon=no --guardian=no >"$D/pdns.log" 2>&1 &
    PIDS+=($!)
    cat > "$ROOT/agent$n/config.env" <<CONF
AGENT_TOKEN=$TOKEN
AGENT_BIND=127.0.0.1
AGENT_PORT=$API
AGENT_ROLES=dns
AGENT_STATE_DIR=$ROOT/agent$n/state
AGENT_NGINX_SITES_DIR=$ROOT/agent$n/sites
AGENT_NGINX_PID_FILE=$ROOT/agent$n/nginx.pid
AGENT_CERT_DIR=$ROOT/agent$n/ssl
AGENT_PDNS_CONFIG_DIR=$D
AGENT_PDNS_PID_FILE=$D/pdns.pid
AGENT_DNS_ZONES_DIR=$ROOT/agent$n/zones
CONF
    target/release/enconf-agent --config "$ROOT/agent$n/config.env" >"$ROOT/agent$n/agent.log" 2>&1 &
    PIDS+=($!)
    echo "$DNS_PORT $API" > "$ROOT/ports$n"
    for _ in $(seq 100); do curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API/v1/health" >/dev/null && break; sleep 0.1; done
done

export ROOT TOKEN ZONES CREATE
python3 - <<'PY'
import json, os, subprocess, time, urllib.request
root, token = os.environ["ROOT"], os.environ["TOKEN"]
zones, create = int(os.environ["ZONES"]), int(os.environ["CREATE"])
servers = [tuple(map(int, open(f"{root}/ports{n}").read().split())) for n in (1, 2)]

def call(api, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{api}{path}", data=data, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.loads(r.read() or b"null")

def dig(port, name):
    out = subprocess.run(["dig", "+short", "+norecurse", "@127.0.0.1", "-p", str(port), name, "A"],
                         capture_output=True, text=True).stdout
    return out.split()

def zone(user, serial, extra):
    records = [{"name": "@", "type": "NS", "ttl": 3600, "content": "ns1.bench.example.", "priority": None},
               {"name": "@", "type": "NS", "ttl": 3600, "content": "ns2.bench.example.", "priority": None},
               {"name": "@", "type": "A", "ttl": 3600, "content": "192.0.2.10", "priority": None},
               {"name": "www", "type": "A", "ttl": 3600, "content": "192.0.2.10", "priority": None}]
    records += [{"name": f"r{i}", "type": "A", "ttl": 300, "content": "192.0.2.20", "priority": None} for i in range(extra)]
    return {"domains": [f"{user}.example"], "roles": ["dns"],
            "zones": [{"name": f"{user}.example", "serial": serial, "records": records}]}

def one_more(label, runs=5):
    """Adds one record at a time to `live`'s zone on both servers, as the controller does (a put
    to each in turn), and times the answers and the moment both serve it."""
    global serial, extra
    worst = 0.0
    for _ in range(runs):
        extra += 1
        serial += 1
        t0 = time.monotonic()
        for _, api in servers:
            call(api, "PUT", "/v1/accounts/live", zone("live", serial, extra))
        answered = time.monotonic() - t0
        name = f"r{extra - 1}.live.example"
        while not all(dig(port, name) == ["192.0.2.20"] for port, _ in servers):
            if time.monotonic() - t0 > 30:
                raise SystemExit(f"{name} not served in 30 s")
            time.sleep(0.005)
        both = time.monotonic() - t0
        worst = max(worst, both)
        print(f"  {label}: both agents answered in {answered * 1000:.0f} ms, both servers answer at {both * 1000:.0f} ms")
    return worst

serial, extra = 2026120201, 0
for _, api in servers:
    call(api, "PUT", "/v1/accounts/live", zone("live", serial, 0))
print("1. baseline (one zone on each server)")
base = one_more("baseline")

print(f"2. {create} zones created through each agent in one batch")
for _, api in servers:
    t0 = time.monotonic()
    call(api, "PUT", "/v1/accounts", {"accounts": [dict(zone(f"c{i}", 2026120201, 0), username=f"c{i}") for i in range(create)]})
    took = time.monotonic() - t0
    print(f"  agent on :{api}: {took:.1f} s, {took / create * 1000:.0f} ms per zone")

print(f"3. {zones} more zones loaded into each PowerDNS (SQL)")
for n in (1, 2):
    sql = ["BEGIN;"]
    for i in range(zones):
        z = f"bulk{i}.example"
        sql.append(f"INSERT INTO domains (name, type) VALUES ('{z}', 'NATIVE');")
        for name, kind, content in ((z, "SOA", f"ns1.bench.example. hostmaster.{z}. 1 10800 3600 1209600 3600"),
                                    (z, "NS", "ns1.bench.example."), (z, "A", "192.0.2.10"), (f"www.{z}", "A", "192.0.2.10")):
            sql.append(f"INSERT INTO records (domain_id, name, type, content, ttl, prio, disabled, auth) "
                       f"VALUES ((SELECT id FROM domains WHERE name='{z}'), '{name}', '{kind}', '{content}', 3600, 0, 0, 1);")
    sql.append("COMMIT;")
    t0 = time.monotonic()
    subprocess.run(["sqlite3", f"{root}/pdns{n}/pdns.sqlite3"], input="\n".join(sql), text=True, check=True)
    subprocess.run(["pdns_control", f"--config-dir={root}/pdns{n}", "rediscover"], check=True, capture_output=True)
    count = subprocess.run(["pdns_control", f"--config-dir={root}/pdns{n}", "list-zones"], capture_output=True, text=True).stdout.count("\n")
    print(f"  pdns{n}: {time.monotonic() - t0:.1f} s, {count} zones listed")
port = servers[0][0]
assert dig(port, f"www.bulk{zones - 1}.example") == ["192.0.2.10"], "bulk zones are served"
print(f"   one more record with {zones + create + 1} zones on each server")
loaded = one_more("loaded")
print(f"worst of 5: baseline {base * 1000:.0f} ms, with {zones + create + 1} zones {loaded * 1000:.0f} ms "
      f"(ratio {loaded / base:.2f}; target <= 1000 ms)")
PY
