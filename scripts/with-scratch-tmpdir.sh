#!/usr/bin/env bash
# Runs COMMAND with TMPDIR set to a fresh directory under /tmp, removed when COMMAND ends. The Swift
# tests make temporary directories they never remove (lh-test-*, lh-audit-*, lh-policy-*,
# lh-keys-*, ...: hundreds per run, 12,000 had piled up in /tmp on the build machine); under a
# scratch TMPDIR they go with it. Mode 1777 like /tmp: the tests' workers run as other users (a root
# runner's per-tenant host ids, the unprivileged run's user) and must reach their workspaces.
# Usage: scripts/with-scratch-tmpdir.sh COMMAND [ARG...]
set -euo pipefail
dir=$(mktemp -d /tmp/lh-tests.XXXXXX)
chmod 1777 "$dir"
# --one-file-system: a mount a failed test left inside is not descended into (nor emptied).
trap 'rm -rf --one-file-system "$dir" 2>/dev/null || echo "with-scratch-tmpdir: could not remove all of $dir" >&2' EXIT
TMPDIR="$dir" "$@"
