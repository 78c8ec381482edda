"""Issue 5 end to end through the real binary and the official Python MCP client: an agent of
acme reads, lists, searches, stats, writes, patches and runs a tiny test suite in its workspace;
globex making the same calls sees only globex's files. The workspace registry's rules through
/api/v1/workspaces, read-only workspaces, and removing a workspace under a live session.
One flow also runs over stdio."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from attack_support import Agent, Tree, World
from interop_support import POLICIES_DIR, assert_ok, assert_tool_error, http_mcp, run_cli
from mcp_compat import ClientSession, StdioServerParameters, stdio_client

pytestmark = pytest.mark.anyio

RUN_TESTS = """#!/bin/sh
# A tiny test suite: every check prints ok/FAIL, the exit code says whether all passed.
fail=0
check() { if eval "$2"; then echo "ok - $1"; else echo "FAIL - $1"; fail=1; fi; }
check "notes are there" 'grep -q "notes of" notes.txt'
check "the answer is 42" '[ "$(cat src/answer.txt)" = "42" ]'
check "three lines" '[ "$(wc -l < src/lines.txt)" -eq 3 ]'
echo "tests: $([ $fail -eq 0 ] && echo passed || echo failed)"
exit $fail
"""

PATCH = """--- a/src/answer.txt
+++ b/src/answer.txt
@@ -1 +1 @@
-41
+42
--- /dev/null
+++ b/src/lines.txt
@@ -0,0 +1,3 @@
+one
+two
+three
"""


async def agent_workflow(session: ClientSession, tree: Tree, other: list[str]) -> None:
    """What a coding agent does in its workspace; `other` are canaries it must never see."""

    async def call(tool: str, args: dict[str, Any]) -> Any:
        result = await session.call_tool(tool, args)
        dumped = json.dumps(result.model_dump(mode="json"))
        for secret in other:
            assert secret not in dumped, f"{tool}: another workspace's canary {secret} in {dumped[:1000]}"
        return result

    read = assert_ok(await call("repo.read_file", {"path": "notes.txt"}), "read_file")
    assert read["content"] == tree.notes and read["truncated"] is False
    page = assert_ok(await call("repo.read_file", {"path": "notes.txt", "offset": 6, "length": 4}), "read_file page")
    assert page["content"] == tree.notes[6:10] and page["truncated"] is True and page["next_offset"] == 10

    listing = assert_ok(await call("repo.list_dir", {"path": ".", "depth": 2}), "list_dir")
    paths = {e["path"] for e in listing["entries"]}
    assert {"notes.txt", "README.md", f"secret_{tree.file_name}.txt", f"dir_{tree.dir_name}",
            f"dir_{tree.dir_name}/inner.txt"} <= paths, paths
    kinds = {e["path"]: e["type"] for e in listing["entries"]}
    assert kinds["notes.txt"] == "file" and kinds[f"dir_{tree.dir_name}"] == "dir"

    found = assert_ok(await call("repo.search", {"pattern": tree.content}), "search")
    assert {m["path"] for m in found["matches"]} == {"notes.txt", f"secret_{tree.file_name}.txt",
                                                     f"dir_{tree.dir_name}/inner.txt"}, found
    stat = assert_ok(await call("repo.stat", {"path": "notes.txt"}), "stat")
    assert stat["type"] == "file" and stat["size"] == len(tree.notes.encode())

    wrote = assert_ok(await call("repo.write_file", {"path": "src/answer.txt", "content": "41\n", "create_parents": True}), "write")
    assert wrote["created"] is True
    assert_ok(await call("repo.write_file", {"path": "tests/run.sh", "content": RUN_TESTS, "create_parents": True}), "write")
    assert_tool_error(await call("repo.write_file", {"path": "src/answer.txt", "content": "x", "create_only": True}), "already_exists")

    failing = assert_ok(await call("shell.run", {"argv": ["sh", "tests/run.sh"]}), "shell.run")
    assert failing["exit_code"] == 1 and "tests: failed" in failing["stdout"], failing

    # A patch whose second hunk does not apply changes nothing (all-or-nothing).
    bad = PATCH.replace("-41", "-40")
    assert_tool_error(await call("repo.apply_patch", {"patch": bad}), "patch_failed")
    assert (tree.root / "src" / "answer.txt").read_text() == "41\n" and not (tree.root / "src" / "lines.txt").exists()
    patched = assert_ok(await call("repo.apply_patch", {"patch": PATCH}), "apply_patch")
    assert {f["path"]: f["action"] for f in patched["files"]} == {"src/answer.txt": "modified", "src/lines.txt": "created"}

    passing = assert_ok(await call("shell.run", {"command": "sh tests/run.sh", "timeout_ms": 10000}), "shell.run")
    assert passing["exit_code"] == 0 and passing["stdout"].endswith("tests: passed\n"), passing
    counted = assert_ok(await call("shell.run", {"argv": ["sh", "-c", "grep -c o src/lines.txt"]}), "shell.run")
    assert counted["stdout"] == "2\n" and counted["exit_code"] == 0
    assert assert_ok(await call("repo.read_file", {"path": "src/answer.txt"}), "read")["content"] == "42\n"
    # The shell sees the workspace as its cwd and nothing of the runner's environment.
    env = assert_ok(await call("shell.run", {"command": "pwd; ls; env"}), "shell.run")
    assert "notes.txt" in env["stdout"] and "LEASEHOLD_OPERATOR_KEY" not in env["stdout"]


async def test_acme_and_globex_agents_each_work_in_their_own_workspace(world: World) -> None:
    acme_tree = world.attacker_workspace("acme")
    globex_tree = world.attacker_workspace("globex")
    for tree, others in ((acme_tree, [globex_tree, world.globex, world.acme2]), (globex_tree, [acme_tree, world.acme, world.acme2])):
        agent_session = world.server.admin("POST", "/sessions", {"tenant_id": tree.tenant, "actor_id": "dev",
                                                                 "workspace_id": tree.workspace}, expect=201).json()
        secrets = [s for t in others for s in (t.content, t.file_name, t.dir_name)] + [world.env_canary]
        async with http_mcp(world.server.mcp_url, agent_session["claim"]) as conn:
            await agent_workflow(conn.session, tree, secrets)
        world.server.admin("DELETE", f"/sessions/{agent_session['session']['id']}", expect=200)
    world.assert_victims_unchanged()
    # Every call was audited with its outcome and worker; exec calls ran in per-call workers.
    records = world.server.admin("GET", f"/audit?tenant_id=globex&limit=10000").json()["records"]
    outcomes = [r["event"] for r in records if r["event"]["event"] == "call.outcome" and r["event"]["workspace"] == globex_tree.workspace]
    assert {o["tool"] for o in outcomes} >= {"repo.read_file", "repo.list_dir", "repo.search", "repo.stat",
                                            "repo.write_file", "repo.apply_patch", "shell.run"}
    assert all(o["worker_id"] and o["outcome"] in ("completed", "error") for o in outcomes), outcomes
    assert {o["isolation"] for o in outcomes if o["tool"] == "shell.run"} == {"call"}


async def test_stdio_agent_reads_writes_and_runs(tmp_path: Path, binary: Path) -> None:
    """The same work over `serve --stdio`, with two tenants registered offline by the CLI."""
    state = tmp_path / "state"
    trees = {}
    from attack_support import plant_tree
    for tenant, ws in (("acme", "w1"), ("globex", "g1")):
        trees[tenant] = plant_tree(tmp_path / "state-workspaces" / tenant / ws, tenant, ws)
        run_cli(binary, "workspace", "add", "--state-dir", str(state), "--policies", str(POLICIES_DIR),
                "--tenant", tenant, "--workspace", ws, "--root", str(trees[tenant].root))
    for tenant, ws, other in (("acme", "w1", "globex"), ("globex", "g1", "acme")):
        data = json.loads(run_cli(binary, "session", "create", "--state-dir", str(state), "--policies", str(POLICIES_DIR),
                                  "--tenant", tenant, "--actor", "dev", "--workspace", ws))
        params = StdioServerParameters(
            command=str(binary), args=["serve", "--stdio", "--state-dir", str(state), "--policies", str(POLICIES_DIR)],
            env={"LEASEHOLD_CLAIM": data["claim"]},
        )
        with open(tmp_path / "stdio-stderr.log", "a") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    o = trees[other]
                    await agent_workflow(session, trees[tenant], [o.content, o.file_name, o.dir_name])


# --------------------------------------------------------------------------------------------
# Registry rules
# --------------------------------------------------------------------------------------------


def post_workspace(world: World, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    if headers is None:
        return world.server.admin("POST", "/workspaces", body)
    return httpx.post(world.server.api_url + "/workspaces", json=body, headers=headers, timeout=20)


def expect_error(response: httpx.Response, status: int, code: str, world: World) -> None:
    assert response.status_code == status, f"expected {status} {code}, got {response.status_code} {response.text}"
    body = response.json()
    text = json.dumps(body)
    assert code in text, body
    world.assert_no_leak(response.text, "registry error")


@pytest.fixture
def fresh_dir(world: World):
    """A new directory inside globex's part of the workspace base (where the operator may register)."""
    counter = {"n": 0}

    def make(name: str = "d", tenant: str = "globex") -> Path:
        counter["n"] += 1
        path = world.workspace_base / tenant / f"{name}{counter['n']}-{os.urandom(3).hex()}"
        path.mkdir(parents=True)
        return Path(os.path.realpath(path))

    return make


@pytest.mark.parametrize("case", [
    "missing", "relative", "dotdot", "dot", "trailing_slash", "double_slash", "symlink_on_path", "symlink_root",
    "slash", "etc", "usr", "proc", "a_file", "nul",
])
def test_registry_refuses_bad_roots(world: World, fresh_dir, case: str) -> None:
    d = fresh_dir()
    (d / "real" / "sub").mkdir(parents=True)
    os.symlink(d / "real", d / "link")
    (d / "file.txt").write_text("x")
    roots = {
        "missing": f"{d}/does-not-exist", "relative": "relative/path", "dotdot": f"{d}/real/../real",
        "dot": f"{d}/./real", "trailing_slash": f"{d}/real/", "double_slash": f"{d}//real",
        "symlink_on_path": f"{d}/link/sub", "symlink_root": f"{d}/link",
        "slash": "/", "etc": "/etc", "usr": "/usr", "proc": "/proc", "a_file": f"{d}/file.txt", "nul": f"{d}/real\u0000x",
    }
    # Even the operator cannot register these; which rule refuses depends on the path.
    expected = {"slash": "root_refused", "etc": "root_refused", "usr": "root_refused", "proc": "root_refused"}
    response = post_workspace(world, {"tenant_id": "globex", "workspace_id": f"bad-{case}".replace("_", "-"), "root": roots[case]})
    expect_error(response, 400, expected.get(case, "invalid_root"), world)


@pytest.mark.parametrize("relation", ["equal", "inside", "containing"])
def test_registry_refuses_another_tenants_root(world: World, relation: str) -> None:
    root = {"equal": world.acme.root, "inside": world.acme.root / f"dir_{world.acme.dir_name}",
            "containing": world.acme.root.parent}[relation]
    # A tenant admin key never names a host path at all.
    key = world.admin_key("globex")
    response = post_workspace(world, {"tenant_id": "globex", "workspace_id": f"overlap-{relation}", "root": str(root)}, key)
    assert response.status_code == 403 and response.json()["error"]["code"] == "root_not_allowed", response.text
    # Nor can the operator give acme's directory to globex: it is outside <base>/globex/.
    response = post_workspace(world, {"tenant_id": "globex", "workspace_id": f"overlap-{relation}", "root": str(root)})
    assert response.status_code == 400 and response.json()["error"]["code"] == "root_outside_base", response.text
    # The refusal names the requested root, never whose root it touches.
    assert '"w1"' not in response.text.replace(str(root), ""), response.text


def test_registry_ids_duplicates_and_tenant_keys(world: World, fresh_dir) -> None:
    for bad in ("bad id", "x" * 65, "", "../w", "wé"):
        response = post_workspace(world, {"tenant_id": "globex", "workspace_id": bad})
        expect_error(response, 400, "invalid_identifier", world)
    response = post_workspace(world, {"tenant_id": "globex", "workspace_id": "g1"})
    expect_error(response, 409, "workspace_exists", world)

    globex_key = world.admin_key("globex")
    # A tenant admin key creates workspaces only for its own tenant...
    response = post_workspace(world, {"tenant_id": "acme", "workspace_id": "planted"}, globex_key)
    expect_error(response, 403, "forbidden", world)
    ok = post_workspace(world, {"tenant_id": "globex", "workspace_id": "own"}, globex_key)
    assert ok.status_code == 201, ok.text
    # ...whose root the runner allocated under its base, in globex's part.
    assert ok.json()["root"] == str(world.workspace_base / "globex" / "own"), ok.text
    # ...lists only its own...
    listed = httpx.get(world.server.api_url + "/workspaces", headers={"Authorization": f"Bearer {globex_key}"}, timeout=20)
    assert listed.status_code == 200 and {w["tenant_id"] for w in listed.json()["workspaces"]} == {"globex"}
    world.assert_no_leak(listed.text, "workspace list")
    assert str(world.acme.root) not in listed.text
    other = httpx.get(world.server.api_url + "/workspaces?tenant_id=acme", headers={"Authorization": f"Bearer {globex_key}"}, timeout=20)
    assert other.status_code == 403
    # ...and cannot remove another tenant's (indistinguishable from a missing one).
    gone = httpx.delete(world.server.api_url + "/workspaces/acme/w1", headers={"Authorization": f"Bearer {globex_key}"}, timeout=20)
    assert gone.status_code == 404
    assert any(w["workspace_id"] == "w1" for w in world.server.admin("GET", "/workspaces?tenant_id=acme").json()["workspaces"])


def test_read_only_workspace_refuses_write_and_exec_tools(world: World, fresh_dir) -> None:
    root = fresh_dir("ro")
    (root / "notes.txt").write_text("read only notes\n")
    world.server.admin("POST", "/workspaces", {"tenant_id": "globex", "workspace_id": "ro", "root": str(root), "read_only": True}, expect=201)
    agent = Agent(world, "globex", "ro")
    try:
        assert agent.call("repo.read_file", {"path": "notes.txt"}).ok()["content"] == "read only notes\n"
        assert agent.call("repo.list_dir", {}).ok()["entries"]
        refused = [
            agent.call("repo.write_file", {"path": "new.txt", "content": "x"}),
            agent.call("repo.apply_patch", {"patch": "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+x\n"}),
            agent.call("shell.run", {"command": "touch new.txt"}),
        ]
        records = agent.audit()
        for answer in refused:
            assert answer.code == "workspace_read_only", answer.message
            record = agent.audited(answer, "workspace_read_only", records)
            assert record["event"] == "call.refused", record
        assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]
    finally:
        agent.close()


def test_removing_a_workspace_refuses_its_sessions_and_destroys_its_workers(world: World) -> None:
    agent, tree = world.attacker()
    try:
        reader = agent.call("repo.read_file", {"path": "notes.txt", "length": 5})
        writer = agent.call("repo.write_file", {"path": "x.txt", "content": "x"})
        workers = {agent.audited(reader)["worker_id"], agent.audited(writer)["worker_id"]}
        response = httpx.delete(world.server.api_url + f"/workspaces/globex/{tree.workspace}",
                                headers={"Authorization": f"Bearer {world.admin_key('globex')}"}, timeout=20)
        assert response.status_code == 204, response.text
        after = [agent.call("repo.read_file", {"path": "notes.txt", "length": 6}),
                 agent.call("shell.run", {"command": "true"})]
        records = agent.audit()
        for answer in after:
            assert answer.code == "workspace_not_found", answer.message
            agent.audited(answer, "workspace_not_found", records)
        all_records = world.server.admin("GET", "/audit?tenant_id=globex&limit=10000").json()["records"]
        destroyed = {r["event"]["worker_id"]: r["event"]["code"] for r in all_records
                     if r["event"]["event"] == "worker.destroyed" and r["event"].get("worker_id") in workers}
        assert destroyed == {w: "workspace_removed" for w in workers}, destroyed
        assert any(r["event"]["event"] == "workspace.removed" and r["event"].get("workspace") == tree.workspace for r in all_records)
    finally:
        agent.close()
