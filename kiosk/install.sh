#!/usr/bin/env bash
# Installs Tablo as a systemd service on a Raspberry Pi OS / Debian kiosk.
# Idempotent: run it again after a new build and it changes only what
# differs (the config in /etc/tablo is never overwritten). See
# kiosk/README.md for the whole kiosk set-up.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo kiosk/install.sh [--binary PATH] [--config FILE] [--cage] [--no-start] [--dry-run]

Installs Tablo as the systemd service `tablo`:
  - creates the system user `tablo` (group tablo, also in group video for
    the framebuffer), if it does not exist;
  - installs the binary as /usr/local/bin/tablo;
  - installs the unit as /etc/systemd/system/tablo.service;
  - installs FILE as /etc/tablo/tablo.toml, unless that file exists (it is
    never overwritten: edit it, or remove it to install a new one);
  - systemctl daemon-reload, enable tablo.service, and (re)start it.

Options:
  --binary PATH   the tablo binary to install
                  (default: target/release/tablo of this checkout)
  --config FILE   the config to install when /etc/tablo/tablo.toml is absent
                  (default: kiosk/demo.toml; see kiosk/*.toml)
  --cage          install systemd/tablo-cage.service (the board in a window
                  under the cage compositor on tty1) instead of
                  systemd/tablo.service (framebuffer, or no screen)
  --no-start      enable the service but do not (re)start it now
  --dry-run       print every action instead of doing it; needs no root
  -h, --help      this text

Exit codes: 0 done, 64 bad usage, 66 a file to install is missing,
77 not root, 78 the config does not pass `tablo check`, 1 anything else.
EOF
}

original_args=("$@")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

binary="$root/target/release/tablo"
config="$here/demo.toml"
unit="$root/systemd/tablo.service"
cage=0
start=1
dry_run=0

# Where things go. The unit file names the binary and the config path.
readonly BIN_DEST=/usr/local/bin/tablo
readonly UNIT_DEST=/etc/systemd/system/tablo.service
readonly CONFIG_DIR=/etc/tablo
readonly CONFIG_DEST=/etc/tablo/tablo.toml
readonly USER_NAME=tablo
readonly STATE_DIR=/var/lib/tablo

die() {
  local code=$1
  shift
  echo "install.sh: $*" >&2
  exit "$code"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --binary)
      [ $# -ge 2 ] || die 64 "--binary needs a path; try --help"
      binary=$2
      shift 2
      ;;
    --config)
      [ $# -ge 2 ] || die 64 "--config needs a file; try --help"
      config=$2
      shift 2
      ;;
    --cage) cage=1; shift ;;
    --no-start) start=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die 64 "unknown option '$1'; try --help" ;;
  esac
done
if [ "$cage" = 1 ]; then
  unit="$root/systemd/tablo-cage.service"
fi

# Prints a command and, unless this is a dry run, runs it.
run() {
  if [ "$dry_run" = 1 ]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    printf '+ %s\n' "$*"
    "$@"
  fi
}

say() {
  echo "install.sh: $*"
}

# Checks that read and change nothing come first, in a dry run too.
{ [ -f "$binary" ] && [ -x "$binary" ]; } ||
  die 66 "no executable tablo binary at $binary; build one (cargo build --release, or a cross build: kiosk/README.md) or pass --binary PATH"
[ -f "$config" ] || die 66 "no config file at $config; pass --config FILE (examples: $here/*.toml)"
[ -f "$unit" ] || die 66 "no unit file at $unit; run this script from a Tablo checkout"
if ! check_output=$("$binary" check --config "$config" 2>&1 >/dev/null); then
  die 78 "$config does not pass 'tablo check': $check_output"
fi
if [ "$dry_run" = 1 ]; then
  say "dry run: printing what would be done; nothing is changed"
elif [ "$(id -u)" != 0 ]; then
  die 77 "installing needs root: sudo $0 ${original_args[*]} (or --dry-run to see what it would do)"
fi
if [ "$cage" = 1 ] && ! command -v cage >/dev/null 2>&1; then
  say "warning: cage is not installed; apt-get install cage xwayland"
fi

# 1. The user, in group video for /dev/fb0.
if ! getent group video >/dev/null; then
  run groupadd --system video
fi
if id -u "$USER_NAME" >/dev/null 2>&1; then
  if id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx video; then
    say "user $USER_NAME exists and is in group video"
  else
    run usermod --append --groups video "$USER_NAME"
  fi
else
  run useradd --system --user-group --groups video --home-dir "$STATE_DIR" \
    --no-create-home --shell /usr/sbin/nologin --comment "Tablo price board" "$USER_NAME"
fi

# 2. The binary.
if cmp -s "$binary" "$BIN_DEST"; then
  say "$BIN_DEST is up to date"
else
  run install -m 0755 -o root -g root "$binary" "$BIN_DEST"
fi

# 3. The unit.
if cmp -s "$unit" "$UNIT_DEST"; then
  say "$UNIT_DEST is up to date"
else
  run install -m 0644 -o root -g root "$unit" "$UNIT_DEST"
fi

# 4. The config: never overwritten. Readable by the service's group only:
# it may hold publish tokens.
if [ -e "$CONFIG_DEST" ]; then
  say "keeping the existing $CONFIG_DEST (not overwritten; compare it with $config)"
else
  run install -d -m 0755 -o root -g root "$CONFIG_DIR"
  run install -m 0640 -o root -g "$USER_NAME" "$config" "$CONFIG_DEST"
fi

# 5. systemd. StateDirectory= in the unit creates /var/lib/tablo.
if [ "$dry_run" = 0 ] && [ ! -d /run/systemd/system ]; then
  say "systemd is not running on this machine: files installed, service not enabled"
  exit 0
fi
run systemctl daemon-reload
run systemctl enable tablo.service
if [ "$start" = 1 ]; then
  run systemctl restart tablo.service
fi
if [ "$dry_run" = 1 ]; then
  say "dry run done: nothing was changed"
else
  say "done. Follow it with: journalctl -u tablo -f; see it with: systemctl status tablo"
fi
