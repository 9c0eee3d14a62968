#!/usr/bin/env bash
# Installs what pylvs needs on a Debian machine, as root: the system tools it drives and the
# Python package itself (editable). `--test` also installs the test tools (keepalived, the
# VRRP peer of the interop tests, ethtool and tshark); `--bench` the benchmark tools (trafgen, nginx
# with its stream module, wrk, matplotlib); `--fuzz` the test tools and atheris (fuzz/).
#
# `--service [--prefix DIR] [--launcher PATH]`, for examples/pylvs.service, instead of the editable
# install: the system tools and a copy of this clone in a virtualenv of its own at DIR (default
# /opt/pylvs), made by this python3 (its own executable: a pyenv shim or a virtualenv resolved),
# with PATH (default /usr/local/sbin/pylvs, the first directory of systemd's search path) a link
# to its `pylvs`. So the unit's `ExecStart=pylvs ...` runs it whatever the unit's PATH and wherever
# the clone is: one under /tmp, which the unit's PrivateTmp hides, or moved or checked out
# elsewhere, plays no part. Run it again after changing the clone, then `systemctl restart pylvs`.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: $0 [--test | --bench | --fuzz | --service [--prefix DIR] [--launcher PATH]]"
mode="" service="" placed="" prefix=/opt/pylvs launcher=/usr/local/sbin/pylvs
while (($#)); do
  case "$1" in
    --test|--bench|--fuzz) mode="$1" ;;
    --service) service=1 ;;
    --prefix|--launcher)
      (($# >= 2)) || { echo "$1 needs a value; $usage" >&2; exit 2; }
      [[ "$1" == --prefix ]] && prefix="$2" || launcher="$2"
      placed="$1"; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$service" && -n "$mode" ]] && { echo "--service goes alone; $usage" >&2; exit 2; }
[[ -n "$placed" && -z "$service" ]] && { echo "$placed goes with --service; $usage" >&2; exit 2; }
if [[ -n "$service" ]]; then
  for path in "$prefix" "$launcher"; do
    [[ "$path" == /* ]] || { echo "$path: an absolute path, please" >&2; exit 2; }
    # what the unit's PrivateTmp hides
    [[ "$path/" == /tmp/* || "$path/" == /var/tmp/* ]] \
      && { echo "$path: the unit's PrivateTmp hides /tmp and /var/tmp from pylvs" >&2; exit 2; }
  done
  # never --clear a directory this script did not make
  if [[ -d "$prefix" && ! -e "$prefix/.pylvs-service" && -n "$(ls -A "$prefix")" ]]; then
    echo "$prefix exists and is not a copy of pylvs made by $0: name another --prefix" >&2
    exit 2
  fi
fi

# tcpdump: what `pylvs lab --trace` captures with (and what a person debugging runs); bird2: the
# BGP speaker of [bgp] and of `pylvs lab ecmp` (pylvs starts its own BIRD, never the service)
apt_packages=(iproute2 nftables curl procps ca-certificates tcpdump bird2)
# keepalived: the VRRP peer of the interoperability tests; ethtool: the XDP lab turns checksum
# offload off with it; tshark: the trace tests read its pcaps with it; chromium: the trace page's test;
# prometheus: the metrics test's scraper (started by the test itself: policy-rc.d below keeps the
# package from starting its service); systemd: its systemd-analyze verifies examples/pylvs.service
# (installing it does not make it PID 1)
[[ "$mode" == "--test" ]] && apt_packages+=(keepalived ethtool tshark chromium prometheus systemd)
[[ "$mode" == "--bench" ]] && apt_packages+=(netsniff-ng nginx-light libnginx-mod-stream wrk util-linux ethtool)
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT
# packages must not start services on this machine (Debian's policy-rc.d convention): bird2's
# own BIRD would hold port 179 in the machine's namespace
[[ -e /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
                                    chmod +x /usr/sbin/policy-rc.d; cleanup+=(/usr/sbin/policy-rc.d); }
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# a fresh Debian has python3 without pip: each is checked on its own
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
# --service makes a virtualenv (and a test of --service does): Debian's python3 has the ensurepip
# that puts pip in one only with python3-venv
if [[ -n "$service" || "$mode" == "--test" ]] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ -n "$service" ]]; then
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "pylvs needs Python 3.11 or later: $(python3 --version)" >&2; exit 1; }
  python=$(python3 -c 'import os, sys
print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))')
  [[ "$python" == /tmp/* || "$python" == /var/tmp/* ]] \
    && { echo "$python: the unit's PrivateTmp hides it; install with a python3 kept elsewhere" >&2
         exit 1; }
  # the clone's sources alone, copied: a build in the clone would take stale modules from build/
  src=$(mktemp -d)
  cleanup+=("$src")
  tar -c --exclude='./.*' --exclude=./build --exclude='*.egg-info' --exclude=__pycache__ \
      --exclude=./tests --exclude=./fuzz --exclude=./bench -f - . | tar -x -C "$src" -f -
  "$python" -m venv --clear "$prefix"
  echo "pylvs for examples/pylvs.service, made by $0 from $PWD" > "$prefix/.pylvs-service"
  "$prefix/bin/python3" -m pip -q install "$src"
  mkdir -p "$(dirname "$launcher")"
  ln -sfn "$prefix/bin/pylvs" "$launcher"
  (cd / && env -i "$launcher" --help >/dev/null)  # as systemd starts it: no PATH, cwd /
  echo "pylvs installed for the service: $launcher -> $prefix/bin/pylvs (python $python)"
  exit 0
fi

extra=""
[[ "$mode" == "--test" ]] && extra="[test]"
[[ "$mode" == "--bench" ]] && extra="[bench]"
[[ "$mode" == "--fuzz" ]] && extra="[test,fuzz]"
pip_args=(-q install -e ".${extra}")
if python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
  # Debian's own python3 refuses system-wide installs without it (PEP 668)
  python3 -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)' \
    && pip_args+=(--break-system-packages)
fi
python3 -m pip "${pip_args[@]}"
echo "pylvs installed: $(python3 -c 'import pylvs; print(pylvs.__file__)')"
echo "(for the systemd unit, examples/pylvs.service: ./scripts/install.sh --service)"
