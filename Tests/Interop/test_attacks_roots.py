"""Tenant walls around the sandbox, through the real binary with two tenants (acme the victim,
globex the attacker holding its own tenant admin key).

Found by an attacker's review of 5850a2b:
- a tenant admin key registered ANY host path as its own workspace root (the runner's state dir,
  the policies dir, /proc/sys/kernel, /etc/cron.d, another tenant's directory...), and the 409
  `overlapping_root` answer told it where other tenants' roots were;
- a root runner's workers were host uid 0: they wrote root-owned files anywhere mounted into them
  and read root-only /proc files.

Roots now belong to the runner: a tenant never names a host path, its workspaces are allocated
under `<base>/<tenant>/`, and only the operator may register an existing directory there. A root
runner's workers run as the tenant's own unprivileged host ids.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from attack_support import Agent, World, canary
from interop_support import OPERATOR_KEY, POLICIES_DIR, leasehold_binary

ROOT_RUNNER = os.geteuid() == 0
needs_root_runner = pytest.mark.skipif(
    not ROOT_RUNNER,
    reason="host ids are only mapped when the runner is root; unprivileged, a worker is the runner's own user "
    "(CI runs this suite as root)",
)


def post(world: World, body: dict, key: str | None = None) -> httpx.Response:
    return httpx.post(world.server.api_url + "/workspaces", json=body,
                      headers={"Authorization": f"Bearer {key or OPERATOR_KEY}"}, timeout=20)


def host_paths(world: World) -> dict[str, str]:
    """Every kind of host path the review registered as a tenant's root."""
    removed = world.workspace_base / "acme" / "removed-sibling"
    removed.mkdir(parents=True, exist_ok=True)
    return {
        "state_dir": str(world.state_dir),
        "policies": str(POLICIES_DIR.resolve()),
        "proc_sys_kernel": "/proc/sys/kernel",
        "etc_cron_d": "/etc/cron.d",
        "usr_local_bin": "/usr/local/bin",
        "sys_fs_cgroup": "/sys/fs/cgroup",
        "root_ssh": "/root/.ssh",
        "proc_1": "/proc/1",
        "binary_dir": str(leasehold_binary().resolve().parent),
        "acme_root": str(world.acme.root),
        "acme_root_inner": str(world.acme.root / f"dir_{world.acme.dir_name}"),
        "acme_tenant_dir": str(world.workspace_base / "acme"),
        "acme_unregistered_sibling": str(removed),
        "workspace_base": str(world.workspace_base),
        "globex_tenant_dir": str(world.workspace_base / "globex"),
        "slash": "/",
    }


CASES = ["state_dir", "policies", "proc_sys_kernel", "etc_cron_d", "usr_local_bin", "sys_fs_cgroup", "root_ssh",
         "proc_1", "binary_dir", "acme_root", "acme_root_inner", "acme_tenant_dir", "acme_unregistered_sibling",
         "workspace_base", "globex_tenant_dir", "slash"]


def registered(world: World) -> list[tuple[str, str, str]]:
    listed = world.server.admin("GET", "/workspaces", expect=200).json()["workspaces"]
    return sorted((w["tenant_id"], w["workspace_id"], w["root"]) for w in listed)


@pytest.mark.parametrize("case", CASES)
def test_a_tenant_admin_key_never_names_a_host_path(world: World, case: str) -> None:
    before = registered(world)
    path = host_paths(world)[case]
    response = post(world, {"tenant_id": "globex", "workspace_id": f"grab-{case}".replace("_", "-"), "root": path},
                    world.admin_key("globex"))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "root_not_allowed", response.text
    # The refusal says nothing about the path: not whether it exists, nor whose it is.
    assert path not in response.text and "acme" not in response.text, response.text
    assert registered(world) == before


@pytest.mark.parametrize("case", CASES)
def test_the_operator_cannot_give_protected_or_foreign_paths_to_a_tenant(world: World, case: str) -> None:
    before = registered(world)
    path = host_paths(world)[case]
    response = post(world, {"tenant_id": "globex", "workspace_id": f"op-{case}".replace("_", "-"), "root": path})
    assert response.status_code == 400, response.text
    code = response.json()["error"]["code"]
    assert code in ("root_refused", "root_outside_base", "invalid_root"), response.text
    # Never whose root a path touches: no other workspace id or tenant beyond the path itself.
    assert '"w1"' not in response.text and "w2" not in response.text.replace(path, ""), response.text
    assert "acme" not in response.text.replace(path, ""), response.text
    assert registered(world) == before


def test_a_tenants_workspace_is_allocated_under_the_base_private_and_usable(world: World) -> None:
    key = world.admin_key("globex")
    response = post(world, {"tenant_id": "globex", "workspace_id": "alloc"}, key)
    assert response.status_code == 201, response.text
    root = Path(response.json()["root"])
    assert root == world.workspace_base / "globex" / "alloc"
    info = os.lstat(root)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    if ROOT_RUNNER:
        assert info.st_uid != 0 and info.st_gid != 0, "a root runner gives workspaces to the tenant's host ids"
    agent = Agent(world, "globex", "alloc")
    try:
        agent.call("repo.write_file", {"path": "hello.txt", "content": "allocated\n"}).ok()
        assert agent.call("repo.read_file", {"path": "hello.txt"}).ok()["content"] == "allocated\n"
        assert agent.shell("cat hello.txt")["stdout"] == "allocated\n"
    finally:
        agent.close()
    # The same id again is a conflict, for the tenant and the operator alike.
    assert post(world, {"tenant_id": "globex", "workspace_id": "alloc"}, key).status_code == 409


def test_a_removed_root_stays_its_tenants_until_the_operator_purges_it(world: World) -> None:
    acme_key, globex_key = world.admin_key("acme"), world.admin_key("globex")
    created = post(world, {"tenant_id": "acme", "workspace_id": "gone"}, acme_key)
    assert created.status_code == 201, created.text
    root = Path(created.json()["root"])
    secret = canary("RemovedRoot")
    agent = Agent(world, "acme", "gone")
    agent.call("repo.write_file", {"path": "left.txt", "content": secret}, leak_check=False).ok()
    agent.close()
    gone = httpx.delete(world.server.api_url + "/workspaces/acme/gone", headers={"Authorization": f"Bearer {acme_key}"},
                        timeout=20)
    assert gone.status_code == 204, gone.text
    assert (root / "left.txt").read_text() == secret  # removed, not purged: still acme's

    # Nobody can hand that directory to globex...
    for key in (globex_key, None):
        response = post(world, {"tenant_id": "globex", "workspace_id": "taken", "root": str(root)}, key)
        assert response.status_code in (400, 403), response.text
        assert secret not in response.text
    # ...and globex's own "gone" is a different, empty directory.
    mine = post(world, {"tenant_id": "globex", "workspace_id": "gone"}, globex_key)
    assert mine.status_code == 201 and Path(mine.json()["root"]) != root, mine.text
    thief = Agent(world, "globex", "gone")
    try:
        listing = thief.call("repo.list_dir", {}, leak_check=False)
        assert secret not in listing.text and "left.txt" not in listing.text
    finally:
        thief.close()

    # acme gets its files back under the same id; only the operator key purges them.
    again = post(world, {"tenant_id": "acme", "workspace_id": "gone"}, acme_key)
    assert again.status_code == 201 and Path(again.json()["root"]) == root, again.text
    assert (root / "left.txt").read_text() == secret
    refused = httpx.delete(world.server.api_url + "/workspaces/acme/gone?purge=true",
                           headers={"Authorization": f"Bearer {acme_key}"}, timeout=20)
    assert refused.status_code == 403, refused.text
    world.server.admin("DELETE", "/workspaces/acme/gone?purge=true", expect=204)
    assert not root.exists()
    assert (world.workspace_base / "globex" / "gone").exists()


@pytest.mark.parametrize("base", ["state", "slash", "tmp", "etc", "inside_state"])
def test_a_workspace_base_over_protected_paths_is_refused_at_start(tmp_path: Path, base: str) -> None:
    state = tmp_path / "state"
    path = {"state": str(state), "slash": "/", "tmp": "/tmp", "etc": "/etc", "inside_state": str(state / "ws")}[base]
    (state / "ws").mkdir(parents=True)
    config = tmp_path / "leasehold.yaml"
    config.write_text(json.dumps({"workspace_bases": [path]}))
    result = subprocess.run(
        [str(leasehold_binary()), "serve", "--http", "127.0.0.1:0", "--state-dir", str(state), "--config", str(config),
         "--policies", str(POLICIES_DIR)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "LEASEHOLD_OPERATOR_KEY": OPERATOR_KEY},
    )
    assert result.returncode != 0, result.stderr
    assert "workspace base" in result.stderr, result.stderr


def test_a_store_directory_outside_the_state_dir_is_never_under_a_workspace_base(tmp_path: Path) -> None:
    """`--store sqlite:DIR` puts the sessions and the audit trail in DIR: like the state dir, it may
    not lie under a workspace base, where a tenant's root (and its workers) could reach it."""
    base = tmp_path / "base"
    store = base / "acme" / "db"
    store.mkdir(parents=True)
    config = tmp_path / "leasehold.yaml"
    config.write_text(json.dumps({"workspace_bases": [str(base)]}))
    process = subprocess.Popen(
        [str(leasehold_binary()), "serve", "--http", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"),
         "--config", str(config), "--policies", str(POLICIES_DIR), "--store", f"sqlite:{store}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LEASEHOLD_OPERATOR_KEY": OPERATOR_KEY},
    )
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("serve started with its store directory under a workspace base") from None
    assert process.returncode != 0 and "workspace base" in stderr, stderr


def test_doctor_lists_registrations_the_root_rules_refuse(tmp_path: Path) -> None:
    binary = leasehold_binary()
    state = tmp_path / "state"
    ok = subprocess.run([str(binary), "workspace", "add", "--state-dir", str(state), "--policies", str(POLICIES_DIR),
                         "--tenant", "acme", "--workspace", "fine"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    # A registration written before the rules existed: straight into the store.
    with sqlite3.connect(state / "leasehold.sqlite") as db:
        db.execute("INSERT INTO workspaces (tenant_id, workspace_id, root, read_only, created_at) "
                   "VALUES ('globex', 'legacy', '/etc', 0, '2026-11-01 00:00:00')")
    report = subprocess.run([str(binary), "doctor", "--state-dir", str(state), "--policies", str(POLICIES_DIR)],
                            capture_output=True, text=True, timeout=120)
    assert "workspace REFUSED: globex/legacy root /etc" in report.stdout, report.stdout + report.stderr
    assert "acme/fine" not in report.stdout


@needs_root_runner
def test_a_root_runners_workers_are_never_host_root(world: World) -> None:
    """Each tenant's workers run as its own unprivileged host ids: what they create is theirs,
    root's files stay root's, and two tenants differ."""
    created: dict[str, int] = {}
    for tenant, tree in (("acme", world.acme), ("globex", world.globex)):
        agent = Agent(world, tenant, tree.workspace)
        try:
            result = agent.shell("touch made-by-worker.txt && grep -E '^Uid:' /proc/self/status")
            assert result["stdout"].split() == ["Uid:", "1000", "1000", "1000", "1000"], result
        finally:
            agent.close()
        made = os.lstat(tree.root / "made-by-worker.txt")
        assert made.st_uid != 0 and made.st_gid != 0, f"{tenant}'s worker created a root-owned file"
        assert made.st_uid == os.lstat(tree.root).st_uid, "the workspace is owned by the tenant's host ids"
        created[tenant] = made.st_uid
    assert created["acme"] != created["globex"], "two tenants must not share host ids"


@needs_root_runner
def test_a_worker_cannot_read_or_write_roots_files_or_root_only_proc(world: World) -> None:
    agent, tree = world.attacker()
    secret = canary("RootOnly")
    (tree.root / "root-only.txt").write_text(secret)
    os.chown(tree.root / "root-only.txt", 0, 0)
    os.chmod(tree.root / "root-only.txt", 0o600)
    (tree.root / "root-owned.txt").write_text("root's\n")
    os.chown(tree.root / "root-owned.txt", 0, 0)
    os.chmod(tree.root / "root-owned.txt", 0o644)
    try:
        answer = agent.call("shell.run", {"command": "cat root-only.txt; echo x >> root-owned.txt || echo append-refused"},
                            leak_check=False)
        assert secret not in answer.text
        assert "append-refused" in answer.ok()["stdout"]
        assert (tree.root / "root-owned.txt").read_text() == "root's\n"
        views = "kpageflags slabinfo timer_list vmallocinfo pagetypeinfo kcore keys sched_debug kallsyms"
        result = agent.shell(f"for f in {views}; do [ -e /proc/$f ] && echo $f=$(head -c 4096 /proc/$f 2>/dev/null | wc -c); done; true")
        lines = [line for line in result["stdout"].splitlines() if "=" in line]
        assert len(lines) >= 5, result
        assert all(line.endswith("=0") for line in lines), result
    finally:
        agent.close()
