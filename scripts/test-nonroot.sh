#!/usr/bin/env bash
# Runs the built Swift test bundle (the unit tests) as an unprivileged user, so
# everything proven as root here is also proven the way production runs Leasehold.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="$(swift build --show-bin-path)/leaseholdPackageTests.xctest"
if [ "$(id -u)" -ne 0 ]; then
    echo "test-nonroot: already unprivileged (uid $(id -u)); the regular run covered it"
    exit 0
fi
user=leasehold-ci
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
if ! runuser -u "$user" -- test -r "$PWD/policies/tiers.yaml" -a -x "$bundle"; then
    echo "test-nonroot: user $user cannot read $PWD (a parent directory is not traversable); make it readable" >&2
    exit 1
fi
echo "test-nonroot: running the Swift tests as $user (uid $(id -u "$user"))"
# In cgroups delegated to that user, as production runs under systemd with Delegate=yes: workers
# then get memory, pids and cpu limits of their own (tests of a host without them use
# worker_cgroups: off).
# The suites run in parallel in one process and each holds databases, sockets and workers: raise
# the soft open-files limit to the hard one, as a production unit does (LimitNOFILE).
# The tests' temporary directories go in a scratch TMPDIR removed at the end (the tests never
# remove theirs; see scripts/with-scratch-tmpdir.sh).
scratch=$(mktemp -d /tmp/lh-tests-nonroot.XXXXXX)
chmod 1777 "$scratch"
trap 'rm -rf --one-file-system "$scratch" 2>/dev/null || echo "test-nonroot: could not remove all of $scratch" >&2' EXIT
scripts/with-delegated-cgroup.sh "$user" env HOME=/tmp TMPDIR="$scratch" \
    bash -c 'ulimit -n "$(ulimit -Hn)"; exec "$@"' _ "$bundle" --testing-library swift-testing
