#!/usr/bin/env bash
# Usage: scripts/with-delegated-cgroup.sh USER COMMAND [ARG...]   (run as root)
#
# Runs COMMAND as USER inside cgroups delegated to USER, the way systemd delegates a unit's group
# with Delegate=yes (deploy/leasehold.service): a group of its own, owned by USER, so an
# unprivileged runner can give each worker memory, pids and cpu limits of its own. cgroup v2 when
# this host's unified hierarchy has the memory controller, else each v1 hierarchy of memory,
# pids and cpu. The groups are removed afterwards.
set -euo pipefail
user="$1"
shift
[ "$(id -u)" -eq 0 ] || { echo "with-delegated-cgroup: must run as root" >&2; exit 1; }

mount_of() { # $1: cgroup2 | a v1 controller name -> its mount point
    awk -v want="$1" '{
        for (i = 1; i <= NF && $i != "-"; i++) {}
        fstype = $(i + 1); opts = "," $(i + 3) ","
        if (want == "cgroup2" && fstype == "cgroup2") { print $5; exit }
        if (want != "cgroup2" && fstype == "cgroup" && index(opts, "," want ",")) { print $5; exit }
    }' /proc/self/mountinfo
}
own_path() { # $1: "" for v2, else a v1 controller -> this shell's group path
    awk -F: -v want="$1" '{
        n = split($2, names, ",")
        if (want == "" && $1 == "0" && $2 == "") { print $3; exit }
        for (i = 1; i <= n; i++) if (names[i] == want) { print $3; exit }
    }' /proc/self/cgroup | sed 's|^/$||'
}

groups=()
name="leasehold-delegated-$$"
unified="$(mount_of cgroup2)"
v2_group=""
if [ -n "$unified" ] && grep -qw memory "$unified$(own_path '')/cgroup.controllers" 2>/dev/null; then
    parent="$unified$(own_path '')"
    v2_group="$parent/$name"
    mkdir "$v2_group"
    # The delegated group's parent must hand it the controllers.
    echo "+memory +pids +cpu" > "$parent/cgroup.subtree_control" 2>/dev/null \
        || echo "with-delegated-cgroup: $parent does not hand memory/pids/cpu down (it holds processes?)" >&2
    chown "$user" "$v2_group" "$v2_group/cgroup.procs" "$v2_group/cgroup.subtree_control" "$v2_group/cgroup.threads"
    groups+=("$v2_group")
else
    for controller in memory pids cpu; do
        point="$(mount_of "$controller")"
        [ -n "$point" ] || continue
        group="$point$(own_path "$controller")/$name"
        mkdir "$group"
        chown "$user" "$group" "$group/cgroup.procs" "$group/tasks"
        groups+=("$group")
    done
fi
[ "${#groups[@]}" -gt 0 ] || echo "with-delegated-cgroup: no cgroup hierarchy to delegate on this host" >&2

remove_tree() { # depth first; a group still holding a process stays
    local dir="$1" child
    for child in "$dir"/*/; do [ -d "$child" ] && remove_tree "${child%/}"; done
    rmdir "$dir" 2>/dev/null || true
}
cleanup() { for group in "${groups[@]}"; do remove_tree "$group"; done; }
trap cleanup EXIT

echo "with-delegated-cgroup: running as $user in ${groups[*]:-no delegated cgroup}"
status=0
(
    for group in "${groups[@]}"; do echo "$BASHPID" > "$group/cgroup.procs"; done
    exec runuser -u "$user" -- "$@"
) || status=$?
exit "$status"
