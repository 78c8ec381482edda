#!/usr/bin/env bash
# Runs the black-box attack suites (Tests/Interop/test_attacks_*.py) again as an unprivileged user,
# so the runner they start is unprivileged the way production runs it. The venv is built from the
# system python3: the root venv's interpreter may live where that user cannot reach.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "test-interop-nonroot: already unprivileged (uid $(id -u)); the regular interop run covered it"
    exit 0
fi
user=leasehold-ci
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
if [ ! -x .venv-nonroot/bin/python ]; then
    /usr/bin/python3 -m venv .venv-nonroot
fi
.venv-nonroot/bin/pip install -q --disable-pip-version-check -r Tests/Interop/requirements.txt
if ! runuser -u "$user" -- test -r "$PWD/Tests/Interop/conftest.py" -a -x "$PWD/.venv-nonroot/bin/python"; then
    echo "test-interop-nonroot: user $user cannot read $PWD or its venv (a parent directory is not traversable)" >&2
    exit 1
fi
echo "test-interop-nonroot: running the attack suites as $user (uid $(id -u "$user"))"
# In cgroups delegated to that user, as production runs under systemd with Delegate=yes.
scripts/with-delegated-cgroup.sh "$user" env HOME=/tmp TMPDIR=/tmp .venv-nonroot/bin/pytest Tests/Interop/test_attacks_*.py \
    -q -p no:cacheprovider -rs
