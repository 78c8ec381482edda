"""Fixtures: the real leasehold binary (started with Tests/Interop's LeaseholdServer) and clients.

One runner per test module (tests create fresh sessions, so they do not disturb each other); its
catalog has a `kb` server whose tools are tiered `read`, except `kb.publish` (tier `external`,
which requires a human's approval). Tenants acme and globex each get workspace `w1`, created
through the client under test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
# The checkout's package first (what is tested is this tree, even over an older installed copy),
# and Tests/Interop for the runner harness the interop suite uses.
sys.path.insert(0, str(REPO_ROOT / "clients" / "python" / "src"))
sys.path.insert(1, str(REPO_ROOT / "Tests" / "Interop"))

from interop_support import (  # noqa: E402  (needs the path above)
    OPERATOR_KEY,
    LeaseholdServer,
    copy_policies,
    leasehold_binary,
    write_catalog_config,
)

from leasehold_client import Leasehold  # noqa: E402

KB_TOOLS = [
    ("kb.finance", "Finance knowledge base"),
    ("kb.support_faq", "Support FAQ"),
    ("kb.support_billing", "Support billing answers"),
    ("kb.internal_notes", "Internal notes"),
    ("kb.publish", "Publish a page (needs approval)"),
]
BUNDLES = {"support-desk": ["kb.support_*", "repo.read_file"]}
FIXTURE_TEXT = "client fixture\n"


@dataclass
class Runner:
    """A running leasehold with its operator key and a tenant admin key per tenant."""

    server: LeaseholdServer
    tenant_keys: dict[str, str]
    roots: dict[str, str]

    @property
    def base_url(self) -> str:
        assert self.server.base_url is not None
        return self.server.base_url

    @property
    def operator_key(self) -> str:
        return OPERATOR_KEY

    def client(self, key: str | None = OPERATOR_KEY) -> Leasehold:
        return Leasehold(self.base_url, key)


def start_runner(directory: Path, extra_config: dict | None = None) -> Runner:
    """Starts leasehold in `directory` with the kb catalog, workspaces acme/w1 and globex/w1."""
    import json

    policies = copy_policies(directory / "policies", [("kb.publish", "external"), ("kb.*", "read")])
    config = write_catalog_config(directory / "leasehold.yaml", {"kb": KB_TOOLS}, BUNDLES)
    if extra_config:
        document = json.loads(config.read_text())
        document.update(extra_config)
        config.write_text(json.dumps(document, indent=1))
    server = LeaseholdServer(leasehold_binary(), directory / "state", policies, config).start()
    keys: dict[str, str] = {}
    roots: dict[str, str] = {}
    try:
        with Leasehold(server.base_url, OPERATOR_KEY) as lh:
            for tenant in ("acme", "globex"):
                workspace = lh.workspaces.create(tenant_id=tenant, workspace_id="w1")
                Path(workspace.root, "README.md").write_text(FIXTURE_TEXT)
                roots[tenant] = workspace.root
                keys[tenant] = lh.admin_keys.create(tenant).key
    except BaseException:
        server.stop()
        raise
    return Runner(server, keys, roots)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Runner]:
    started = start_runner(Path(os.path.realpath(tmp_path_factory.mktemp("runner"))))
    yield started
    started.server.stop()
    if request.session.testsfailed:
        print("\n--- leasehold stderr ---\n" + "\n".join(started.server.log[-100:]))


@pytest.fixture
def lh(runner: Runner) -> Iterator[Leasehold]:
    """The sync client with the operator key."""
    with runner.client() as client:
        yield client
