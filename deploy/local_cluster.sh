#!/usr/bin/env bash
# The deploy/ layout on this machine, with one command: PostgreSQL, N replicas of the app sharing it,
# and nginx in front (deploy/nginx/capsnet.conf), all on loopback, all files under one run folder
# outside the repository.
#
#   deploy/local_cluster.sh start    start what is not running, wait until each answers
#   deploy/local_cluster.sh status   what runs; exit 0 all, 1 some, 3 none
#   deploy/local_cluster.sh stop     stop what runs (the run folder and its database stay)
#
# Settings, from the environment:
#   CAPSNET_CLUSTER_DIR    run folder (default ${TMPDIR:-/tmp}/capsnet-cluster-<uid>)
#   CAPSNET_CLUSTER_PORT   nginx's port on 127.0.0.1 (default 8500)
#   CAPSNET_REPLICA_PORTS  the replicas' ports on 127.0.0.1 (default "8601 8602")
#   CAPSNET_PYTHON         the Python with requirements.txt installed (default .venv/bin/python)
#   CAPSNET_PG_BIN         PostgreSQL's programs (default the newest /usr/lib/postgresql/*/bin)
#   CAPSNET_START_TIMEOUT  seconds each part may take to answer (default 180)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=${CAPSNET_CLUSTER_DIR:-${TMPDIR:-/tmp}/capsnet-cluster-$(id -u)}
PORT=${CAPSNET_CLUSTER_PORT:-8500}
REPLICA_PORTS=${CAPSNET_REPLICA_PORTS:-"8601 8602"}
PYTHON=${CAPSNET_PYTHON:-$ROOT/.venv/bin/python}
PG_BIN=${CAPSNET_PG_BIN:-$(find /usr/lib/postgresql -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)}
START_TIMEOUT=${CAPSNET_START_TIMEOUT:-180}

PG_DIR=$RUN/postgresql # the data folder, its log, and the Unix socket (no TCP port)
NGINX_DIR=$RUN/nginx
DB_URL="postgresql+psycopg://capsnet@/capsnet?host=$PG_DIR"

die() { echo "local_cluster: $*" >&2; exit 1; }

# initdb and postgres refuse to run as root: as root they run as the 'postgres' user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The pid in a pid file, if that process is alive and its command line holds PATTERN (a recycled pid,
# or a stopped process's zombie, does not count).
running_pid() {
  local pidfile=$1 pattern=$2 pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern" || return 1
  echo "$pid"
}

replica_pattern() { echo "--server.port $1 "; }

pg_running() { [ -f "$PG_DIR/data/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; }

# Wait until URL answers 200, while process PID lives, for at most START_TIMEOUT seconds.
wait_http() {
  "$PYTHON" - "$1" "$2" "$START_TIMEOUT" <<'PY'
import os, sys, time, urllib.request

url, pid, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
deadline = time.monotonic() + limit
while True:
    try:
        with opener.open(url, timeout=5) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        pass
    if not os.path.exists(f"/proc/{pid}") or not open(f"/proc/{pid}/cmdline", "rb").read():
        sys.exit(f"local_cluster: the process behind {url} exited (see its log)")
    if time.monotonic() > deadline:
        sys.exit(f"local_cluster: {url} did not answer within {limit:g} s")
    time.sleep(0.25)
PY
}

# Send SIGNAL to the process in PIDFILE (if it is ours) and wait until it is gone.
stop_pid() {
  local pidfile=$1 pattern=$2 signal=$3 pid waited=0
  if pid=$(running_pid "$pidfile" "$pattern"); then
    kill "-$signal" "$pid" 2>/dev/null || true
    while running_pid "$pidfile" "$pattern" >/dev/null; do
      if [ "$waited" -ge 300 ]; then kill -KILL "$pid" 2>/dev/null || true; fi # 30 s: no more waiting
      sleep 0.1
      waited=$((waited + 1))
    done
  fi
  rm -f "$pidfile"
}

start_postgres() {
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL not found (CAPSNET_PG_BIN=$PG_BIN): apt-get install -y postgresql"
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    mkdir -p "$PG_DIR"
    chmod 0700 "$PG_DIR" # the socket accepts anyone who can reach it (trust): only its owner can
    if [ "$(id -u)" = 0 ]; then
      chown postgres:postgres "$PG_DIR"
      as_pg test -x "$PG_DIR" || die "the postgres user cannot reach $PG_DIR: choose a CAPSNET_CLUSTER_DIR it can (e.g. under /tmp)"
    fi
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U capsnet --auth=trust -E UTF8 >"$RUN/initdb.log" 2>&1 ||
      die "initdb failed: see $RUN/initdb.log"
  fi
  if ! pg_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t "$START_TIMEOUT" \
      -o "-k $PG_DIR -c listen_addresses='' -c unix_socket_permissions=0700" start >/dev/null ||
      die "PostgreSQL did not start: see $PG_DIR/server.log"
  fi
  if [ -z "$("$PG_BIN/psql" -X -h "$PG_DIR" -U capsnet -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'capsnet'")" ]; then
    "$PG_BIN/createdb" -h "$PG_DIR" -U capsnet capsnet
  fi
  echo "postgresql: running, CAPSNET_CLASS_DB=$DB_URL"
}

start_replicas() {
  [ -x "$PYTHON" ] || die "no Python at $PYTHON: python3 -m venv .venv && .venv/bin/pip install -r requirements.txt"
  # Streamlit signs its cookies with this secret: every replica needs the same one.
  if [ ! -s "$RUN/cookie_secret" ]; then
    (umask 077 && "$PYTHON" -c "import secrets; print(secrets.token_hex(32))" >"$RUN/cookie_secret")
  fi
  local port pid
  for port in $REPLICA_PORTS; do
    running_pid "$RUN/replica-$port.pid" "$(replica_pattern "$port")" >/dev/null && continue
    # From the repository root, so each replica reads .streamlit/config.toml.
    (cd "$ROOT" && CAPSNET_CLASS_DB=$DB_URL STREAMLIT_SERVER_COOKIE_SECRET=$(cat "$RUN/cookie_secret") \
      exec setsid "$PYTHON" -m streamlit run app/streamlit_app.py \
      --server.address 127.0.0.1 --server.port "$port" --server.headless true \
      </dev/null >"$RUN/replica-$port.log" 2>&1) &
    echo $! >"$RUN/replica-$port.pid"
  done
  for port in $REPLICA_PORTS; do # started together, waited for together
    pid=$(cat "$RUN/replica-$port.pid")
    wait_http "http://127.0.0.1:$port/_stcore/health" "$pid" || die "replica $port did not start: see $RUN/replica-$port.log"
    echo "replica: running on 127.0.0.1:$port (pid $pid)"
  done
}

start_nginx() {
  command -v nginx >/dev/null || die "nginx not found: apt-get install -y nginx"
  if running_pid "$NGINX_DIR/nginx.pid" "nginx: master" >/dev/null; then
    echo "nginx: running on http://127.0.0.1:$PORT/"
    return
  fi
  mkdir -p "$NGINX_DIR/capsnet" "$NGINX_DIR/tmp"
  local user="" port
  if [ "$(id -u)" = 0 ]; then # root's workers run as nobody: they need the temp folder
    user="user nobody nogroup;"
    chown nobody:nogroup "$NGINX_DIR/tmp"
  fi
  cat >"$NGINX_DIR/nginx.conf" <<EOF
# Written by deploy/local_cluster.sh: a main configuration around deploy/nginx/capsnet.conf.
$user
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log notice;
events { worker_connections 512; }
http {
    client_body_temp_path $NGINX_DIR/tmp/body;
    proxy_temp_path $NGINX_DIR/tmp/proxy;
    fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
    uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
    scgi_temp_path $NGINX_DIR/tmp/scgi;
    include $ROOT/deploy/nginx/capsnet.conf;
}
EOF
  : >"$NGINX_DIR/capsnet/upstreams.conf"
  for port in $REPLICA_PORTS; do
    echo "server 127.0.0.1:$port max_fails=2 fail_timeout=10s;" >>"$NGINX_DIR/capsnet/upstreams.conf"
  done
  cat >"$NGINX_DIR/capsnet/site.conf" <<EOF
listen 127.0.0.1:$PORT;
server_name localhost;
access_log $NGINX_DIR/access.log capsnet;
# Local only: which replica answered (deploy/README.md; the tests read it). Not on a real machine.
add_header X-Capsnet-Replica \$upstream_addr always;
EOF
  nginx -t -q -e "$NGINX_DIR/error.log" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" ||
    die "nginx's configuration is not valid: see $NGINX_DIR/error.log"
  nginx -e "$NGINX_DIR/error.log" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" || die "nginx did not start: see $NGINX_DIR/error.log"
  local pid=""
  for _ in $(seq 100); do # the master writes its pid file just after it forks
    pid=$(running_pid "$NGINX_DIR/nginx.pid" "nginx: master") && break
    sleep 0.05
  done
  [ -n "$pid" ] || die "nginx did not start: see $NGINX_DIR/error.log"
  wait_http "http://127.0.0.1:$PORT/_stcore/health" "$pid" || die "nginx does not reach the replicas: see $NGINX_DIR/error.log"
  echo "nginx: running on http://127.0.0.1:$PORT/"
}

cmd_start() {
  case "$(realpath -m "$RUN")/" in
    "$ROOT"/*) die "the run folder $RUN is inside the repository: choose another CAPSNET_CLUSTER_DIR" ;;
  esac
  mkdir -p "$RUN"
  chmod 0711 "$RUN" # the postgres user (when root starts this) passes through to its own folder
  start_postgres
  start_replicas
  start_nginx
}

cmd_stop() {
  stop_pid "$NGINX_DIR/nginx.pid" "nginx: master" TERM # QUIT would wait for the open WebSockets
  local port
  for port in $REPLICA_PORTS; do
    stop_pid "$RUN/replica-$port.pid" "$(replica_pattern "$port")" TERM
  done
  if pg_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
  fi
  echo "stopped (the run folder $RUN stays)"
}

cmd_status() {
  local up=0 parts=0 port
  parts=$((parts + 1))
  if pg_running; then up=$((up + 1)); echo "postgresql: running, CAPSNET_CLASS_DB=$DB_URL"; else echo "postgresql: stopped"; fi
  for port in $REPLICA_PORTS; do
    parts=$((parts + 1))
    if running_pid "$RUN/replica-$port.pid" "$(replica_pattern "$port")" >/dev/null; then
      up=$((up + 1)); echo "replica: running on 127.0.0.1:$port"
    else
      echo "replica: stopped (127.0.0.1:$port)"
    fi
  done
  parts=$((parts + 1))
  if running_pid "$NGINX_DIR/nginx.pid" "nginx: master" >/dev/null; then
    up=$((up + 1)); echo "nginx: running on http://127.0.0.1:$PORT/"
  else
    echo "nginx: stopped"
  fi
  if [ "$up" = "$parts" ]; then return 0; elif [ "$up" = 0 ]; then return 3; else return 1; fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
