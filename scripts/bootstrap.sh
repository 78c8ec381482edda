#!/usr/bin/env bash
# Installs what building and testing Leasehold needs on a fresh Debian/Ubuntu machine:
# system packages via apt (only the missing ones), and the Python test dependencies in .venv.
# Usage: scripts/bootstrap.sh [--python]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v swift >/dev/null 2>&1; then
    echo "bootstrap: swift is not on PATH; install Swift 6.2 or newer (https://www.swift.org/install/linux/)" >&2
    exit 1
fi

# libc6-dev: the sandbox tests compile their syscall probe statically (gcc -static).
# wfuzz: its Traversal wordlist feeds the path attack tests. bubblewrap, firejail: benchmark peers;
# wrk: the benchmark load generator. procps: pgrep, which attack tests use to find leftover processes.
# python3, strace, curl: what the shell attack tests run inside workers (they see the host's /usr).
packages=(libseccomp-dev libcap-dev libsqlite3-dev pkg-config gcc libc6-dev wfuzz bubblewrap firejail wrk procps python3 strace curl)
# python3-venv: the unprivileged attack run builds its venv from Debian's /usr/bin/python3.
packages+=(python3-venv)
# chromium, chromium-driver: the console's browser tests (Tests/Interop/test_console.py, Selenium).
packages+=(chromium chromium-driver)
# faketime: libfaketime jumps the runner's wall clock in Tests/Interop/test_clock_jumps.py.
packages+=(faketime)
# postgresql: a throwaway server (scripts/pg-throwaway.sh) for the PostgreSQL store and the cluster
# tests; haproxy: the load balancer in front of the cluster tests' three nodes.
packages+=(postgresql haproxy)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "bootstrap: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The example upstream MCP servers (examples/) run inside confined workers, which see /usr but not
# the operator's home: their venv is built from Debian's /usr/bin/python3 (make run and the tests).
if [ ! -x .venv-examples/bin/python ]; then
    /usr/bin/python3 -m venv .venv-examples
fi
.venv-examples/bin/pip install -q --disable-pip-version-check -r examples/requirements.txt

if [ "${1:-}" = "--python" ]; then
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    .venv/bin/pip install -q --disable-pip-version-check -r Tests/Interop/requirements.txt
    # The Python client package with its MCP helper and test extras (make test-client).
    .venv/bin/pip install -q --disable-pip-version-check "./clients/python[mcp,test]"
fi
