"""Risk-tier policy files through the real binary: validation with file:line, explain, tenant
overrides with two tenants, and live reload (file change and SIGHUP) with list_changed."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import anyio
import pytest

from interop_support import (
    ListChangedWatcher,
    assert_not_in_scope,
    copy_policies,
    http_mcp,
    run_cli,
    write_catalog_config,
)

pytestmark = pytest.mark.anyio

RELOAD_TIMEOUT_S = 15.0


def policy_check(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "policy", "check", *args], capture_output=True, text=True, timeout=30)


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_shipped_policy_is_valid(binary: Path) -> None:
    out = run_cli(binary, "policy", "check", "--policies", str(Path(__file__).resolve().parents[2] / "policies"))
    assert out.startswith("ok: 5 tiers"), out


def test_check_reports_every_problem_with_file_and_line(binary: Path, tmp_path: Path) -> None:
    policies = copy_policies(tmp_path / "policies", [("kb.*_get", "read"), ("kb.fina*", "write")])
    tiers = policies / "tiers.yaml"
    # Break the `external` tier (the last one) and misspell a key in `read`; `exec` stays valid so
    # the tenant override below can be compared with it.
    text = tiers.read_text()
    head, _, tail = text.rpartition("seccomp_profile: exec\n")
    tiers.write_text((head + "seccomp_profile: exce\n" + tail).replace("    network: none\n", "    network: none\n    netwrok: none\n", 1))
    (policies / "tenants").mkdir()
    (policies / "tenants" / "globex.yaml").write_text(
        'tools:\n  - {pattern: "shell.run", tier: read}\ndeny: ["shell run"]\n'
    )
    result = policy_check(binary, "--policies", str(policies))
    assert result.returncode == 1, result.stdout
    out = result.stdout
    assert f"{tiers}:{line_of(tiers, 'exce')}:" in out and 'seccomp_profile "exce"' in out, out
    assert f"{tiers}:{line_of(tiers, 'netwrok')}:" in out and 'unknown key "netwrok"' in out, out
    tools = policies / "tools.yaml"
    assert f"{tools}:{line_of(tools, 'kb.fina*')}: patterns kb.*_get (read" in out, out
    assert "equally specific and both match kb.fina_get" in out, out
    globex = policies / "tenants" / "globex.yaml"
    assert f"{globex}:2: override shell.run -> read would loosen shell.run" in out, out
    assert "overrides may only tighten" in out, out
    assert f"{globex}:3:" in out and 'invalid tool pattern "shell run"' in out, out
    # A server refuses to start on it, naming the same problems.
    start = subprocess.run(
        [str(binary), "serve", "--http", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"), "--policies", str(policies)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "LEASEHOLD_OPERATOR_KEY": "lh_op_" + "x" * 40},
    )
    assert start.returncode != 0 and 'seccomp_profile "exce"' in start.stderr, start.stderr


def test_explain_prints_the_decision_path(binary: Path, tmp_path: Path, server) -> None:
    policies = copy_policies(tmp_path / "policies")
    (policies / "tenants").mkdir()
    (policies / "tenants" / "acme.yaml").write_text(
        'tools:\n  - {pattern: "shell.run", tier: external}\ndeny: ["repo.apply_patch"]\n'
    )
    out = run_cli(binary, "policy", "explain", "shell.run", "--policies", str(policies), "--tenant", "acme")
    assert "shell.run -> exec (exact, line" in out, out
    assert "tenant acme" in out and "shell.run -> external (exact, line 2)   <- wins" in out, out
    assert "tier external:" in out and "approval: required (grant lasts 300 s, 1 use(s))" in out, out
    out = run_cli(binary, "policy", "explain", "kb.nothing", "--policies", str(policies))
    assert "not in the catalog" in out and "no pattern matches" in out and "tier: none" in out, out
    # With a session from a live state directory: visible or hidden, with the reason.
    session, _ = server.create_session(denied_tool_names=["repo.write_*"])
    out = run_cli(
        binary, "policy", "explain", "repo.write_file", "--policies", str(policies), "--session", session["id"],
        "--state-dir", str(server.state_dir),
    )
    assert f"session {session['id']} (tenant acme, actor alice): hidden: tool repo.write_file is denied by session pattern repo.write_*" in out, out
    out = run_cli(
        binary, "policy", "explain", "repo.apply_patch", "--policies", str(policies), "--session", session["id"],
        "--state-dir", str(server.state_dir),
    )
    assert "hidden: tool repo.apply_patch is denied for tenant acme by pattern repo.apply_patch" in out, out


@pytest.fixture
def two_tenant_server(tmp_path: Path, start_server, workspace_root: Path):
    policies = copy_policies(tmp_path / "live-policies")
    config = tmp_path / "leasehold.yaml"
    write_catalog_config(config, {"kb": [("kb.finance", "finance pages"), ("kb.support_login", "login help")]}, {})
    config.write_text(config.read_text().rstrip().rstrip("}") + ', "policy_reload_interval_seconds": 1}\n')
    server = start_server(policies=policies, config=config)
    globex_root = server.workspace_dir("globex")
    server.register_workspace(globex_root, tenant="globex")
    return server, policies


async def wait_for_policy(server, predicate) -> dict:
    with anyio.fail_after(RELOAD_TIMEOUT_S):
        while True:
            status = (await server.aadmin("GET", "/policy", expect=200)).json()
            if predicate(status):
                return status
            await anyio.sleep(0.1)  # the status has no push channel; poll it, bounded by RELOAD_TIMEOUT_S


async def test_live_reload_widens_narrows_and_rejects_invalid_files(two_tenant_server) -> None:
    server, policies = two_tenant_server
    acme_session, acme_claim = server.create_session()
    globex_session, globex_claim = server.create_session(tenant_id="globex", actor_id="gina")
    initial = (await server.aadmin("GET", "/policy", expect=200)).json()
    acme_watch, globex_watch = ListChangedWatcher(), ListChangedWatcher()
    async with http_mcp(server.mcp_url, acme_claim, acme_watch) as acme, http_mcp(
        server.mcp_url, globex_claim, globex_watch
    ) as globex:
        await acme.wait_for_notification_stream()
        await globex.wait_for_notification_stream()
        assert "kb.finance" not in await acme.tool_names(), "a tool without a tier is denied"

        # 1. A new rule maps the kb server: both tenants see it, and both are told.
        # (Counts are taken before each change: the notification may arrive before the status poll.)
        acme_before, globex_before = acme_watch.count, globex_watch.count
        tools = policies / "tools.yaml"
        tools.write_text(tools.read_text() + '  - {pattern: "kb.*", tier: read}\n')
        status = await wait_for_policy(server, lambda s: s["version"] != initial["version"])
        await acme_watch.wait_count(acme_before + 1)
        await globex_watch.wait_count(globex_before + 1)
        assert "kb.finance" in await acme.tool_names()
        assert "kb.finance" in await globex.tool_names()

        # 2. A tenant override for globex only: shell.* denied there, acme untouched.
        globex_before = globex_watch.count
        (policies / "tenants").mkdir()
        (policies / "tenants" / "globex.yaml").write_text('deny: ["shell.*"]\n')
        status = await wait_for_policy(server, lambda s, v=status["version"]: s["version"] != v)
        await globex_watch.wait_count(globex_before + 1)
        assert "shell.run" not in await globex.tool_names()
        await assert_not_in_scope(globex.session, "shell.run", {"command": "id"})
        assert "shell.run" in await acme.tool_names()
        acme_count = acme_watch.count

        # 3. An invalid edit is rejected with file:line; the policy in force stays.
        (policies / "tenants" / "globex.yaml").write_text('deny: ["shell.*"]\ntools:\n  - {pattern: "repo.read_file", tier: exec}\n')
        rejected = await wait_for_policy(server, lambda s: s.get("last_rejection") is not None)
        assert rejected["version"] == status["version"]
        assert any("globex.yaml:3: override repo.read_file -> exec would loosen" in e for e in rejected["last_rejection"]["errors"]), rejected
        assert "shell.run" not in await globex.tool_names()
        assert "kb.finance" in await acme.tool_names()
        assert acme_watch.count == acme_count, "a rejected reload must not notify"
        assert any("policy reload rejected" in line for line in server.log)


async def test_sighup_reloads_when_polling_is_off(tmp_path: Path, start_server) -> None:
    policies = copy_policies(tmp_path / "policies")
    config = tmp_path / "leasehold.yaml"
    write_catalog_config(config, {"kb": [("kb.finance", "finance pages")]}, {})
    config.write_text(config.read_text().rstrip().rstrip("}") + ', "policy_reload_interval_seconds": 0}\n')
    server = start_server(policies=policies, config=config)
    _, claim = server.create_session()
    initial = (await server.aadmin("GET", "/policy", expect=200)).json()
    watcher = ListChangedWatcher()
    async with http_mcp(server.mcp_url, claim, watcher) as conn:
        await conn.wait_for_notification_stream()
        before = watcher.count
        tools = policies / "tools.yaml"
        tools.write_text(tools.read_text() + '  - {pattern: "kb.finance", tier: read}\n')
        # A negative check needs time: wait past the default 2 s polling interval to show that with
        # polling off the edit alone reloads nothing.
        await anyio.sleep(2.5)
        assert (await server.aadmin("GET", "/policy", expect=200)).json()["version"] == initial["version"]
        server.send_signal(signal.SIGHUP)
        await wait_for_policy(server, lambda s: s["version"] != initial["version"])
        await watcher.wait_count(before + 1)
        assert "kb.finance" in await conn.tool_names()
    # The process survived the signal and still serves.
    assert (await server.aadmin("GET", "/policy", expect=200)).status_code == 200
