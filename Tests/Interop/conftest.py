"""Fixtures: the leasehold binary, a fresh state directory, and a running HTTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The PostgreSQL and three-node cluster fixtures of test_cluster.py and test_attacks_cluster.py.
pytest_plugins = ["cluster_support"]

from interop_support import (
    POLICIES_DIR,
    TENANT,
    WORKSPACE,
    LeaseholdServer,
    copy_policies,
    leasehold_binary,
    write_catalog_config,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def binary() -> Path:
    return leasehold_binary()


@pytest.fixture
def workspace_root(tmp_path: Path) -> Path:
    """The tenant's workspace directory inside the runner's default workspace base
    (`<state dir>-workspaces/<tenant>/<workspace>`, with the state dir at tmp_path/state)."""
    root = tmp_path / "state-workspaces" / TENANT / WORKSPACE
    root.mkdir(parents=True)
    (root / "README.md").write_text("interop fixture\n")
    return Path(os.path.realpath(root))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _start(binary: Path, state_dir: Path, policies: Path, config: Path | None, workspace_root: Path) -> LeaseholdServer:
    server = LeaseholdServer(binary, state_dir, policies, config).start()
    server.register_workspace(workspace_root)
    return server


@pytest.fixture
def server(binary: Path, state_dir: Path, workspace_root: Path, request: pytest.FixtureRequest) -> Iterator[LeaseholdServer]:
    """A running server with the repo's policies, no extra catalog, and workspace acme/w1."""
    started = _start(binary, state_dir, POLICIES_DIR, None, workspace_root)
    yield started
    started.stop()
    _dump_log_on_failure(request, started)


@pytest.fixture
def start_server(binary: Path, state_dir: Path, workspace_root: Path, request: pytest.FixtureRequest):
    """Factory for a server with custom policies/config; stopped at teardown."""
    started: list[LeaseholdServer] = []

    def factory(policies: Path = POLICIES_DIR, config: Path | None = None) -> LeaseholdServer:
        srv = _start(binary, state_dir, policies, config, workspace_root)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()
        _dump_log_on_failure(request, srv)


def _dump_log_on_failure(request: pytest.FixtureRequest, server: LeaseholdServer) -> None:
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("\n--- leasehold stderr ---\n" + "\n".join(server.log[-200:]))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """One two-tenant server per module (see attack_support.World); cases use fresh sessions."""
    from attack_support import World

    built = World(Path(os.path.realpath(tmp_path_factory.mktemp("world"))))
    yield built
    built.stop()
    failed = request.session.testsfailed
    if failed:
        print("\n--- leasehold stderr (world) ---\n" + "\n".join(built.server.log[-100:]))


@pytest.fixture
def approval_server(tmp_path: Path, start_server) -> LeaseholdServer:
    """A runner whose catalog has `kb.publish` in the `external` tier (approval required) and `kb.read`
    in `read`, with a globex workspace beside acme's (test_approvals, the 2026-07-28 approval tests)."""
    policies = copy_policies(tmp_path / "policies", [("kb.publish", "external"), ("kb.read", "read")])
    config = write_catalog_config(
        tmp_path / "leasehold.yaml", {"kb": [("kb.publish", "publish a page"), ("kb.read", "read a page")]}, {}
    )
    server = start_server(policies=policies, config=config)
    server.register_workspace(server.workspace_dir("globex"), tenant="globex")
    return server
