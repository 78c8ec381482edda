"""Several Leasehold nodes on one PostgreSQL, behind HAProxy, for the cluster tests and benchmark.

Real parts only: Debian's PostgreSQL server (a throwaway cluster in a temp dir on a loopback
port, `scripts/pg-throwaway.sh`), the real `leasehold serve` binary per node, Debian's HAProxy
with the configuration docs/cluster.md ships (`deploy/haproxy.cfg`, nodes filled in).
"""

from __future__ import annotations

import importlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import httpx

import pytest
import yaml

from interop_support import (
    INITIALIZE_BODY,
    OPERATOR_KEY,
    POLICIES_DIR,
    REPO_ROOT,
    LeaseholdServer,
    copy_policies,
    jsonrpc_messages,
    leasehold_binary,
    poll,
    raw_headers,
    write_catalog_config,
)
from leasehold_harness import shared_node_secrets, write_audit_key

sys.path.insert(0, str(REPO_ROOT / "deploy"))
render_haproxy = importlib.import_module("render-haproxy").render

PG_SCRIPT = REPO_ROOT / "scripts" / "pg-throwaway.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _world_traversable(path: Path) -> None:
    """Lets the unprivileged `postgres` user (root runs) reach a cluster dir under a temp dir."""
    for parent in [path, *path.parents]:
        if str(parent) == "/":
            break
        try:
            parent.chmod(parent.stat().st_mode | 0o001)
        except PermissionError:
            pass


class ThrowawayPostgres:
    """One PostgreSQL server for a test module; a fresh database per test."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = ""

    def start(self) -> ThrowawayPostgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        _world_traversable(self.directory)
        out = subprocess.run(
            ["bash", str(PG_SCRIPT), "start", str(self.directory), str(self.port)],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, f"pg-throwaway start failed: {out.stderr}"
        self.url = out.stdout.strip()
        return self

    def psql(self, database: str, sql: str) -> str:
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "leasehold", "-d", database,
             "-v", "ON_ERROR_STOP=1", "-tAqc", sql],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, f"psql failed: {out.stderr}"
        return out.stdout.strip()

    def fresh_database(self) -> tuple[str, str]:
        """A new empty database: (name, store URL)."""
        name = "c_" + secrets.token_hex(8)
        self.psql("postgres", f"CREATE DATABASE {name}")
        return name, f"postgres://leasehold@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(["bash", str(PG_SCRIPT), "stop", str(self.directory)], capture_output=True, timeout=60)


class Cluster:
    """N nodes (`n1`..`nN`) sharing one database, one claim key set, one audit signing key and one
    workspace base, each with its own state directory."""

    def __init__(self, binary: Path, root: Path, store_url: str, nodes: int = 3,
                 policies: Path = POLICIES_DIR, extra_config: dict[str, Any] | None = None):
        self.binary = binary
        self.root = root
        self.store_url = store_url
        self.policies = policies
        self.names = [f"n{i + 1}" for i in range(nodes)]
        self.shared = root / "shared"
        self.workspace_base = root / "workspaces"
        self.extra_config = extra_config or {}
        self.servers: dict[str, LeaseholdServer] = {}
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.haproxy_url = ""
        # The server and database behind `store_url`, when a fixture made them (psql access).
        self.postgres: ThrowawayPostgres | None = None
        self.database = ""

    def sql(self, statement: str) -> str:
        assert self.postgres is not None, "this cluster's database was not made by the fixture"
        return self.postgres.psql(self.database, statement)

    # Set-up ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Writes what the nodes share: claim keys, the audit signing key, their configs."""
        self.shared.mkdir(parents=True, exist_ok=True)
        self.workspace_base.mkdir(parents=True, exist_ok=True)
        keys, audit_key = shared_node_secrets(self.binary, self.shared)
        for name in self.names:
            state = self.root / name / "state"
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_audit_key(state, audit_key)
            config = {
                "node_id": name,
                "store": self.store_url,
                "keys_file": str(keys),
                "workspace_bases": [str(self.workspace_base)],
                **self.extra_config,
            }
            (self.root / name / "leasehold.yaml").write_text(yaml.safe_dump(config))

    def node_server(self, name: str) -> LeaseholdServer:
        return LeaseholdServer(self.binary, self.root / name / "state", self.policies, self.root / name / "leasehold.yaml")

    def start(self, concurrently: bool = False) -> Cluster:
        self.prepare()
        servers = {name: self.node_server(name) for name in self.names}
        if concurrently:
            errors: list[BaseException] = []

            def run(server: LeaseholdServer) -> None:
                try:
                    server.start()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(s,)) for s in servers.values()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
        else:
            for server in servers.values():
                server.start()
        self.servers = servers
        return self

    def restart(self, name: str) -> LeaseholdServer:
        server = self.node_server(name).start()
        self.servers[name] = server
        return server

    def __getitem__(self, name: str) -> LeaseholdServer:
        return self.servers[name]

    @property
    def first(self) -> LeaseholdServer:
        return self.servers[self.names[0]]

    def register_workspace(self, tenant: str, workspace: str) -> Path:
        root = self.workspace_base / tenant / workspace
        root.mkdir(parents=True, exist_ok=True)
        (root / "README.md").write_text(f"{tenant}/{workspace} fixture\n")
        self.first.admin("POST", "/workspaces",
                         {"tenant_id": tenant, "workspace_id": workspace, "root": os.path.realpath(root)}, expect=201)
        return root

    # HAProxy ---------------------------------------------------------------------------------

    def haproxy_config(self, port: int) -> str:
        """deploy/haproxy.cfg with this cluster's nodes in place of its three example nodes."""
        nodes = [(name, self.servers[name].base_url.removeprefix("http://")) for name in self.names]
        return render_haproxy(f"127.0.0.1:{port}", nodes)

    def start_haproxy(self) -> str:
        if self.haproxy is not None:
            return self.haproxy_url
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        port = free_port()
        config = self.root / "haproxy.cfg"
        config.write_text(self.haproxy_config(port))
        check = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"haproxy -c: {check.stdout}{check.stderr}"
        self.haproxy = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.haproxy_url = f"http://127.0.0.1:{port}"
        poll("haproxy to serve /healthz", lambda: _answers(self.haproxy_url + "/healthz"), limit=20)
        return self.haproxy_url

    # Tear-down -------------------------------------------------------------------------------

    def kill9(self, name: str) -> None:
        self.servers[name].kill()

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.terminate()
            self.haproxy.wait(timeout=20)
        for server in self.servers.values():
            server.stop()

    def audit_verify(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), "audit", "verify", "--store", self.store_url,
             "--public-key", str(self.root / self.names[0] / "state" / "audit-signing.pub")],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "LEASEHOLD_OPERATOR_KEY": OPERATOR_KEY},
        )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# Fixtures and callers shared by test_cluster.py and test_attacks_cluster.py ------------------

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]
# kb.publish has no upstream server: a call that got past its approval is answered unknown_tool by
# the confined worker it runs in (as in test_approvals.py).
RAN = "unknown_tool"
ADMIN = {"Authorization": f"Bearer {OPERATOR_KEY}"}


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres(tmp_path_factory.mktemp("pg") / "cluster").start()
    yield server
    server.stop()


def _start_cluster(binary: Path, root: Path, postgres: ThrowawayPostgres) -> Cluster:
    """Three nodes started at once on a fresh database (so the schema is migrated by three
    processes concurrently), with acme/w1 and globex/w1 registered and `kb.publish` (approval
    required) in the catalog."""
    database, url = postgres.fresh_database()
    policies = copy_policies(root / "policies", [("kb.publish", "external")])
    catalog = root / "catalog.yaml"
    write_catalog_config(catalog, {"kb": [("kb.publish", "publish a page")]}, {})
    extra = yaml.safe_load(catalog.read_text())
    started = Cluster(binary, root / "cluster", url, policies=policies, extra_config=extra)
    started.postgres, started.database = postgres, database
    started.start(concurrently=True)
    started.register_workspace("acme", "w1")
    started.register_workspace("globex", "w1")
    return started


def _stop_cluster(started: Cluster, failed: bool) -> None:
    started.stop()
    if failed:
        for name, server in started.servers.items():
            print(f"---- {name} log ----")
            print("\n".join(server.log[-80:]))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: ThrowawayPostgres,
            request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """One cluster for a module's tests that leave it running (each uses sessions of its own)."""
    failures = request.session.testsfailed
    started = _start_cluster(leasehold_binary(), tmp_path_factory.mktemp("cluster"), postgres)
    yield started
    _stop_cluster(started, request.session.testsfailed > failures)


@pytest.fixture
def fresh_cluster(binary: Path, tmp_path: Path, postgres: ThrowawayPostgres,
                  request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster of its own, for a test that kills a node or checks a fresh database."""
    failures = request.session.testsfailed
    started = _start_cluster(binary, tmp_path, postgres)
    yield started
    _stop_cluster(started, request.session.testsfailed > failures)


def new_session(node, tenant: str = "acme", actor: str = "alice", **fields) -> tuple[dict, str]:
    body = {"tenant_id": tenant, "actor_id": actor, "workspace_id": "w1", **fields}
    data = node.admin("POST", "/sessions", body, expect=201).json()
    return data["session"], data["claim"]


class Caller:
    """One MCP connection (raw JSON-RPC over Streamable HTTP) to one URL."""

    def __init__(self, url: str, claim: str):
        self.url, self.claim, self.sid, self.next_id = url, claim, None, 10

    async def open(self) -> httpx.Response:
        async with httpx.AsyncClient(timeout=20) as client:
            response = await client.post(self.url, json=INITIALIZE_BODY, headers=raw_headers(self.claim))
        if response.status_code == 200:
            self.sid = response.headers["mcp-session-id"]
        return response

    async def opened(self) -> Caller:
        response = await self.open()
        assert response.status_code == 200, response.text
        return self

    async def post(self, name: str, arguments: dict) -> httpx.Response:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(self.url, json=body, headers=raw_headers(self.claim, self.sid, VERSION))

    async def tools(self) -> list[str]:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/list", "params": {}}
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(self.url, json=body, headers=raw_headers(self.claim, self.sid, VERSION))
        assert response.status_code == 200, response.text
        return [tool["name"] for tool in jsonrpc_messages(response)[0]["result"]["tools"]]

    async def call(self, name: str = "repo.read_file", arguments: dict | None = None) -> dict:
        response = await self.post(name, arguments if arguments is not None else {"path": "README.md"})
        assert response.status_code == 200, response.text
        return jsonrpc_messages(response)[0]["result"]


def error_code(result: dict) -> str | None:
    if not result.get("isError"):
        return None
    return result["structuredContent"]["error"]["code"]


def audit_records(node, **query: str) -> list[dict]:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    records: list[dict] = []
    after = 0
    while True:
        page = node.admin("GET", f"/audit?{params}&after_seq={after}&limit=1000", expect=200).json()["records"]
        records += page
        if len(page) < 1000:
            return records
        after = page[-1]["seq"]


def worker_processes(pid: int) -> set[int]:
    """Every process below the runner `pid` (its confined workers and what they run)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found
