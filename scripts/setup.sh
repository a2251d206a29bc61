#!/usr/bin/env bash
# Installs everything labctl and its tests need on Debian 12, as root: Debian packages and a
# project virtualenv (.venv) with labctl installed in it. Safe to run again: does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages and builds namespaces later)" >&2
    exit 1
fi

packages=(openssh-server openssh-client iproute2 ethtool util-linux procps kmod
          gcc make libc6-dev git python3 python3-venv iperf3 sockperf
          linux-headers-amd64 build-essential bc flex bison libelf-dev  # module builds
          linux-source  # full kernel sources: netmap's patched drivers are built from them
          qemu-system-x86 qemu-utils mmdebstrap e2fsprogs  # the VM lab (docs/labs.md)
          chromium  # the nightly HTML report is checked in a real browser
          postgresql)  # the results store's PostgreSQL backend is tested against a real server
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    # Installing openssh-server must not start a system sshd: the lab runs its own, per host.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    trap '[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # ...nor at the next boot, if this script is what installed it.
    if [[ " ${missing[*]} " == *" openssh-server "* ]] && command -v systemctl >/dev/null; then
        systemctl disable --quiet ssh.service ssh.socket 2>/dev/null || true
    fi
fi

python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
if [ ! -x .venv/bin/python ]; then
    echo "setup.sh: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q -e '.[test]'
echo "setup.sh: ready ($(.venv/bin/labctl --version))"
