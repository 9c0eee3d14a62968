#!/usr/bin/env bash
# Installs what pylvs needs on a Debian machine, as root: the system tools it drives and the
# Python package itself (editable). `--test` also installs the test tools (keepalived, the
# VRRP peer of the interop tests, ethtool and tshark); `--bench` the benchmark tools (trafgen, nginx
# with its stream module, wrk, matplotlib); `--fuzz` the test tools and atheris (fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."

# tcpdump: what `pylvs lab --trace` captures with (and what a person debugging runs); bird2: the
# BGP speaker of [bgp] and of `pylvs lab ecmp` (pylvs starts its own BIRD, never the service)
apt_packages=(iproute2 nftables curl procps ca-certificates tcpdump bird2)
# keepalived: the VRRP peer of the interoperability tests; ethtool: the XDP lab turns checksum
# offload off with it; tshark: the trace tests read its pcaps with it; chromium: the trace page's test;
# prometheus: the metrics test's scraper (started by the test itself: policy-rc.d below keeps the
# package from starting its service); systemd: its systemd-analyze verifies examples/pylvs.service
# (installing it does not make it PID 1)
[[ "${1:-}" == "--test" ]] && apt_packages+=(keepalived ethtool tshark chromium prometheus systemd)
[[ "${1:-}" == "--bench" ]] && apt_packages+=(netsniff-ng nginx-light libnginx-mod-stream wrk util-linux ethtool)
# packages must not start services on this machine (Debian's policy-rc.d convention): bird2's
# own BIRD would hold port 179 in the machine's namespace
[[ -e /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
                                    chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; }
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# a fresh Debian has python3 without pip: each is checked on its own
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

extra=""
[[ "${1:-}" == "--test" ]] && extra="[test]"
[[ "${1:-}" == "--bench" ]] && extra="[bench]"
[[ "${1:-}" == "--fuzz" ]] && extra="[test,fuzz]"
pip_args=(-q install -e ".${extra}")
if python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
  # Debian's own python3 refuses system-wide installs without it (PEP 668)
  python3 -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)' \
    && pip_args+=(--break-system-packages)
fi
python3 -m pip "${pip_args[@]}"
echo "pylvs installed: $(python3 -c 'import pylvs; print(pylvs.__file__)')"
