"""Disk quotas through the real binary (issue 14, finding 2): one tenant filling the disk must not
turn the fail-closed audit log into everyone's outage.

- globex (the attacker) has a 4 MiB workspace quota (`tenant_limits.tenants.globex`): a write past
  it is refused `quota_exceeded`; shell.run can overshoot it within one call (exec-tier writes are
  measured after the call), after which the workspace is frozen: writes that grow it are refused
  and exec calls see it read-only, until writes that shrink it take it back under. acme (the
  victim) writes and runs commands throughout.
- As root, on one small tmpfs holding both the state directory and the workspaces, globex fills
  the filesystem completely with one shell.run; the audit reserve is released (and recorded), and
  acme's calls keep being answered, never `audit_unavailable`. Growth on that filesystem waits
  until globex shrinks and the reserve is back.

Exec calls are never cached; read calls take distinct arguments where a worker must answer."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from attack_support import Agent, World

MIB = 1 << 20

# Spares at their default: a per-call worker confined ahead while the workspace could be written
# must not serve a call once it is frozen (the worker binding carries the read-only flag).
CONFIG = """tenant_limits:
  tenants:
    globex: {workspace_disk_mib: 4, disk_mib: 64}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = Path(tmp_path_factory.mktemp("disk"))
    config = base / "leasehold.yaml"
    config.write_text(CONFIG)
    world = World(base, config=config)
    yield world
    world.stop()


def disk(world: World, tenant: str, workspace: str) -> dict[str, Any]:
    """`disk` of the workspace GET (operator key)."""
    return world.server.admin("GET", f"/workspaces/{tenant}/{workspace}", expect=200).json()["disk"]


def write(agent: Agent, path: str, size: int, char: str = "x") -> Any:
    return agent.call("repo.write_file", {"path": path, "content": char * size})


def operator_audit(world: World) -> list[dict[str, Any]]:
    response = world.server.admin("GET", "/audit?limit=10000", expect=200)
    return [r["event"] for r in response.json()["records"]]


def test_a_tenant_key_reads_only_its_own_workspaces_disk(world: World) -> None:
    """The workspace GET (with its disk usage) is the operator's and each tenant's own: globex's
    admin key gets acme's workspace as 404, the same answer as a workspace that does not exist,
    and nothing of acme's usage; its own workspace answers."""
    import httpx

    headers = {"Authorization": f"Bearer {world.admin_key('globex')}"}
    for path in ("/workspaces/acme/w1", "/workspaces/acme/nope", "/workspaces/acme/..%2Fglobex"):
        refused = httpx.get(world.server.api_url + path, headers=headers, timeout=30)
        assert refused.status_code == 404, (path, refused.text)
        assert "disk" not in refused.json() and "bytes" not in refused.text, refused.text
    own = httpx.get(world.server.api_url + "/workspaces/globex/g1", headers=headers, timeout=30)
    assert own.status_code == 200 and "disk" in own.json(), own.text


def test_a_tenant_over_its_disk_quota_is_refused_and_frozen_alone(world: World) -> None:
    attacker, tree = world.attacker("globex")
    victim = Agent(world, "acme", "w1", actor="alice")
    try:
        status = disk(world, "globex", tree.workspace)
        assert status["quota_bytes"] == 4 * MIB and not status["frozen"], status
        assert disk(world, "acme", "w1")["quota_bytes"] == 4096 * MIB

        # Within the quota, then one write that would take it past: refused, audited, nothing written.
        assert write(attacker, "one.bin", 3 * MIB // 2).code is None
        assert write(attacker, "two.bin", 3 * MIB // 2).code is None
        refused = write(attacker, "three.bin", 3 * MIB // 2)
        assert refused.code == "quota_exceeded", refused.message
        attacker.audited(refused, "quota_exceeded")
        assert not (tree.root / "three.bin").exists()
        # The victim is not affected: well past globex's quota, its writes go through.
        for index in range(3):
            assert write(victim, f"victim{index}.bin", 3 * MIB // 2, "v").code is None

        # One exec call writes past the quota in files under every per-file limit: it cannot be
        # stopped mid-call, but the workspace is frozen as soon as it ends.
        ran = attacker.shell("for i in 1 2 3 4 5 6; do head -c 1048576 /dev/zero > fill$i.bin; done; echo filled")
        assert ran["exit_code"] == 0 and "filled" in ran["stdout"], ran
        status = disk(world, "globex", tree.workspace)
        assert status["frozen"] and status["bytes"] > 4 * MIB, status
        frozen = [e for e in operator_audit(world) if e["event"] == "disk.frozen"]
        assert any(e.get("workspace") == tree.workspace for e in frozen), frozen

        # Frozen: a write that grows is refused, an exec call cannot write the workspace at all.
        grow = attacker.call("repo.write_file", {"path": "tiny.txt", "content": "a"})
        assert grow.code == "quota_exceeded", grow.message
        attacker.audited(grow, "quota_exceeded")
        blocked = attacker.shell("echo more > more.txt && echo wrote; ls > /dev/null")
        assert "wrote" not in blocked["stdout"] and "Read-only" in blocked["stderr"], blocked
        assert not (tree.root / "more.txt").exists()
        # Still readable, and the victim still writes and runs.
        assert attacker.call("repo.read_file", {"path": "notes.txt", "length": 7}).code is None
        assert write(victim, "victim-during.txt", 100, "v").code is None
        ran = victim.shell("echo victim > victim-shell.txt && cat victim-shell.txt")
        assert ran["exit_code"] == 0 and ran["stdout"] == "victim\n", ran
        assert not disk(world, "acme", "w1")["frozen"]

        # Writes that shrink are allowed while frozen; once under the quota the workspace thaws.
        for index in range(1, 7):
            assert write(attacker, f"fill{index}.bin", 0).code is None, index
        status = disk(world, "globex", tree.workspace)
        assert not status["frozen"] and status["bytes"] < 4 * MIB, status
        ran = attacker.shell("echo again > again.txt && cat again.txt")
        assert ran["exit_code"] == 0 and ran["stdout"] == "again\n", ran
        thawed = [e for e in operator_audit(world) if e["event"] == "disk.thawed"]
        assert any(e.get("workspace") == tree.workspace for e in thawed), thawed
    finally:
        attacker.close()
        victim.close()


# -- a full filesystem shared with the audit log (root only: mounts a tmpfs) -------------------

TMPFS_CONFIG = """worker_max_spares: 0
audit_reserve_mib: 16
tenant_limits:
  tenants:
    globex: {workspace_disk_mib: 8}
"""


@pytest.fixture
def full_world(tmp_path: Path) -> Iterator[World]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs to fill; the quota test above runs unprivileged too")
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m,mode=0755", "tmpfs", str(mount)], check=True)
    world = None
    try:
        config = tmp_path / "leasehold.yaml"
        config.write_text(TMPFS_CONFIG)
        # The state directory and the workspace base (`<state>-workspaces`) both land on the tmpfs.
        world = World(mount, config=config)
        assert os.stat(world.state_dir).st_dev == os.stat(mount).st_dev == os.stat(world.workspace_base).st_dev
        yield world
    finally:
        if world is not None:
            world.stop()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_filling_the_audit_logs_filesystem_is_not_an_outage(full_world: World) -> None:
    world = full_world
    attacker, tree = world.attacker("globex")
    victim = Agent(world, "acme", "w1", actor="alice")
    try:
        assert (world.state_dir / "audit-reserve").stat().st_blocks * 512 >= 16 * MIB
        assert write(victim, "before.txt", 100, "v").code is None
        # One exec call fills the filesystem to the last block (far past globex's 8 MiB quota).
        ran = attacker.shell("head -c 200M /dev/zero > fill.bin; df -k . | tail -1")
        assert ran["exit_code"] is not None, ran
        statvfs = os.statvfs(world.state_dir)
        assert (tree.root / "fill.bin").stat().st_size > 50 * MIB

        events = operator_audit(world)
        assert [e for e in events if e["event"] == "audit.reserve_released"], events[-10:]
        assert statvfs.f_bavail * statvfs.f_frsize >= 8 * MIB, "the reserve's space is back for the audit log"

        # The victim's calls keep being answered and audited; nothing on the full filesystem grows.
        answers = [
            victim.call("repo.read_file", {"path": "notes.txt", "length": 5}),
            victim.call("repo.list_dir", {"path": ".", "limit": 77}),
            victim.call("shell.run", {"command": "cat notes.txt | wc -c"}),
        ]
        for answer in answers:
            assert answer.code is None, answer.message
        refused = write(victim, "during.txt", 100, "v")
        assert refused.code == "quota_exceeded" and "full" in refused.message["result"]["content"][0]["text"], \
            refused.message
        victim.audited(refused, "quota_exceeded")
        ready = httpx.get(world.server.base_url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        records = victim.audit()
        assert not [r for r in records if r.get("code") == "audit_unavailable"], records[-5:]

        # The attacker shrinks (a write that shrinks is allowed); space is back, so is the reserve.
        assert write(attacker, "fill.bin", 0).code is None
        assert write(victim, "after.txt", 100, "v").code is None
        events = operator_audit(world)
        assert [e for e in events if e["event"] == "audit.reserve_restored"], events[-10:]
        assert (world.state_dir / "audit-reserve").stat().st_blocks * 512 >= 16 * MIB
    finally:
        attacker.close()
        victim.close()
