"""A two-tenant world for the end-to-end and attack tests: one real `leasehold serve`, tenants
`acme` (two workspaces) and `globex`, every workspace full of unique canary strings (in file
contents, file names and directory names), a canary in the runner's environment, in its state
directory and in acme's audit trail and cache.

Attacks are made through raw JSON-RPC over Streamable HTTP (`Agent`), synchronously, so a case
can plant files on the host, race a call from a thread, and inspect every byte of the answer.
The pass condition of every case is checked by the same three helpers:

- `World.assert_no_leak(text)`: no victim canary in a response, error message or audit view;
- `Agent.audited(request_id)`: the call left its record (with its code when the record has one);
- `World.assert_victims_unchanged()`: no byte of a victim workspace changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from interop_support import (
    INITIALIZE_BODY,
    OPERATOR_KEY,
    POLICIES_DIR,
    LeaseholdServer,
    jsonrpc_messages,
    leasehold_binary,
    raw_headers,
    workspace_base_of,
)

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]
# Every canary starts with this, so a search for it (any case) would find any of them.
CANARY_PREFIX = "LhCanary"
ENV_SECRET_NAME = "LEASEHOLD_INTEROP_SECRET"

# Codes a confined worker answers with when a path does not lead to something it may serve.
CONFINED_CODES = frozenset({
    "path_outside_workspace", "not_found", "invalid_arguments", "path_too_long", "not_a_directory",
    "is_a_directory", "not_regular_file", "hard_link", "permission_denied", "already_exists",
    "patch_failed", "read_only_workspace", "changed_during_read", "binary_file",
})


def canary(tag: str) -> str:
    return f"{CANARY_PREFIX}{tag}{secrets.token_hex(8)}"


@dataclass
class Tree:
    """One workspace's files on the host; every name and content holds a canary of its own."""

    tenant: str
    workspace: str
    root: Path
    content: str  # in notes.txt, the secret file and the inner file
    file_name: str  # secret_<file_name>.txt
    dir_name: str  # dir_<dir_name>/inner.txt
    extra: list[str] = field(default_factory=list)

    @property
    def canaries(self) -> list[str]:
        return [self.content, self.file_name, self.dir_name, *self.extra]

    @property
    def notes(self) -> str:
        return f"notes of {self.tenant}/{self.workspace}: {self.content}\n"


def plant_tree(root: Path, tenant: str, workspace: str) -> Tree:
    root.mkdir(parents=True)
    tag = f"{tenant}{workspace}".replace("-", "")
    tree = Tree(tenant, workspace, Path(os.path.realpath(root)), canary(tag + "Content"), canary(tag + "File"),
                canary(tag + "Dir"))
    (root / "notes.txt").write_text(tree.notes)
    (root / f"secret_{tree.file_name}.txt").write_text(f"secret {tree.content}\n")
    (root / f"dir_{tree.dir_name}").mkdir()
    (root / f"dir_{tree.dir_name}" / "inner.txt").write_text(f"inner {tree.content}\n")
    (root / "README.md").write_text(f"readme of {tenant}/{workspace}\n")
    return tree


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under root (lstat, no symlink followed) with a digest of what it is."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "symlink:" + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "dir" if path.is_dir() else "other"
    return out


@dataclass
class Answer:
    request_id: int
    text: str  # the whole HTTP body as received
    message: dict[str, Any]

    @property
    def result(self) -> dict[str, Any]:
        assert "result" in self.message, f"expected a tool result, got {self.message}"
        return self.message["result"]

    @property
    def structured(self) -> dict[str, Any]:
        return self.result.get("structuredContent") or {}

    @property
    def is_error(self) -> bool:
        return self.result.get("isError") is True

    @property
    def code(self) -> str | None:
        if "error" in self.message:  # a JSON-RPC error (e.g. tool_not_in_scope)
            detail = (self.message["error"].get("data") or {}).get("detail") or self.message["error"]["message"]
            return detail.split(":", 1)[0]
        return self.structured["error"]["code"] if self.is_error else None

    def ok(self) -> dict[str, Any]:
        assert not self.is_error, f"expected success, got {self.message}"
        return self.structured


class Agent:
    """One session of one tenant and one MCP connection, speaking raw JSON-RPC."""

    def __init__(self, world: World, tenant: str, workspace: str, actor: str = "agent", **session: Any):
        self.world, self.tenant, self.workspace = world, tenant, workspace
        body = {"tenant_id": tenant, "actor_id": actor, "workspace_id": workspace, **session}
        data = world.server.admin("POST", "/sessions", body, expect=201).json()
        self.session, self.claim = data["session"], data["claim"]
        self.http = httpx.Client(timeout=httpx.Timeout(60))
        self.next_id = 0
        self.connect(self.claim)

    def connect(self, claim: str) -> None:
        """A new MCP connection presenting `claim` (e.g. after a hand-off closed the old one)."""
        self.claim = claim
        response = self.http.post(self.world.server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
        assert response.status_code == 200, response.text
        self.sid = response.headers["mcp-session-id"]
        self.http.post(self.world.server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                       headers=raw_headers(claim, self.sid, VERSION))

    def reconnect(self) -> None:
        """A fresh claim for this session on a new connection."""
        claim = self.world.server.admin("POST", f"/sessions/{self.session_id}/claims", expect=201).json()["claim"]
        self.connect(claim)

    @property
    def session_id(self) -> str:
        return self.session["id"]

    def call(self, name: str, arguments: dict[str, Any], *, leak_check: bool = True) -> Answer:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}
        response = self.http.post(self.world.server.mcp_url, json=body, headers=raw_headers(self.claim, self.sid, VERSION))
        assert response.status_code == 200, f"{name}: HTTP {response.status_code} {response.text[:500]}"
        answer = Answer(self.next_id, response.text, jsonrpc_messages(response)[0])
        if leak_check:
            self.world.assert_no_leak(answer.text, f"{name} {json.dumps(arguments)[:200]}", attacker=self)
        return answer

    def shell(self, command: str, **extra: Any) -> dict[str, Any]:
        answer = self.call("shell.run", {"command": command, **extra})
        return answer.ok()

    def audit(self) -> list[dict[str, Any]]:
        """This session's records, read with the tenant's own admin key (the attacker's view)."""
        key = self.world.admin_key(self.tenant)
        response = httpx.get(self.world.server.api_url + f"/audit?session_id={self.session_id}&limit=10000",
                             headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert response.status_code == 200, response.text
        self.world.assert_no_leak(response.text, "audit view", attacker=self)
        return [r["event"] for r in response.json()["records"]]

    def audited(self, answer: Answer, code: str | None = None, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The record that closes `answer`'s call: call.refused (gateway) or call.outcome (worker)."""
        records = self.audit() if records is None else records
        mine = [r for r in records if r.get("request_id") == str(answer.request_id)
                and r["event"] in ("call.refused", "call.outcome", "call.cached")]
        assert mine, f"request {answer.request_id} left no call.refused/call.outcome record: {records[-5:]}"
        record = mine[-1]
        if code is not None:
            if record["event"] == "call.refused":
                assert record.get("code") == code, record
            elif record["event"] == "call.outcome":
                assert record["outcome"] in ("error", "failed", "limit_exceeded"), record
                # A worker's own refusal is audited as outcome "error"; when the record names the
                # code it must be the one the caller saw (test_worker_refusals_are_audited_with_their_code
                # requires that it does).
                if "code" in record and record["outcome"] == "error":
                    assert record["code"] == code, record
        return record

    def close(self, revoke: bool = True) -> None:
        """Ends the case: revoking the session destroys its warm workers (each holds descriptors
        in the runner; see test_idle_warm_workers_do_not_starve_other_tenants)."""
        self.http.close()
        if revoke:
            self.world.server.admin("DELETE", f"/sessions/{self.session_id}")


class World:
    def __init__(self, base: Path, policies: Path = POLICIES_DIR, config: Path | None = None, preexec: Any = None):
        self.base = base
        self.state_dir = base / "state"
        # Roots live where the runner allows them: <workspace base>/<tenant>/<workspace>.
        self.workspace_base = workspace_base_of(self.state_dir)
        self.acme = plant_tree(self.workspace_base / "acme" / "w1", "acme", "w1")
        self.acme2 = plant_tree(self.workspace_base / "acme" / "w2", "acme", "w2")
        self.globex = plant_tree(self.workspace_base / "globex" / "g1", "globex", "g1")
        # A file with only one name elsewhere gets a second name in an attacker's workspace.
        self.hardlink_victim = self.acme.root / "hardlink_victim.txt"
        self.hardlink_victim.write_text(f"hard link victim {self.acme.content}\n")
        self.env_canary = canary("Env")
        self.state_canary = canary("State")
        self.audit_canary = canary("Audit")
        self.server = LeaseholdServer(
            leasehold_binary(), self.state_dir, policies, config, preexec=preexec,
            extra_env={ENV_SECRET_NAME: self.env_canary},
        ).start()
        (self.state_dir / f"acme_{self.state_canary}.txt").write_text(self.state_canary)
        for tree in (self.acme, self.acme2, self.globex):
            self.server.register_workspace(tree.root, tenant=tree.tenant, workspace=tree.workspace)
        self._keys: dict[str, str] = {}
        self._cases = 0
        self.victim_snapshots = {t.workspace: snapshot(t.root) for t in (self.acme, self.acme2)}
        # acme's own activity puts its canaries in the audit trail and the cache.
        owner = Agent(self, "acme", "w1", actor="alice")
        assert owner.call("repo.read_file", {"path": "notes.txt"}, leak_check=False).ok()["content"] == self.acme.notes
        assert owner.call(f"kb.{self.audit_canary}", {}, leak_check=False).code == "tool_not_in_scope"
        owner.close()

    # -- keys and workspaces ------------------------------------------------------------------

    def admin_key(self, tenant: str) -> str:
        if tenant not in self._keys:
            self._keys[tenant] = self.server.admin("POST", f"/tenants/{tenant}/admin-keys", expect=201).json()["key"]
        return self._keys[tenant]

    def attacker_workspace(self, tenant: str = "globex") -> Tree:
        """A fresh workspace of `tenant`'s (its own canaries), so a case can plant files freely."""
        self._cases += 1
        name = f"case{self._cases}"
        tree = plant_tree(self.workspace_base / tenant / name, tenant, name)
        self.server.register_workspace(tree.root, tenant=tenant, workspace=name)
        return tree

    def attacker(self, tenant: str = "globex", **session: Any) -> tuple[Agent, Tree]:
        tree = self.attacker_workspace(tenant)
        return Agent(self, tenant, tree.workspace, **session), tree

    # -- pass conditions ------------------------------------------------------------------------

    def victim_canaries(self, attacker: Agent | None = None) -> list[str]:
        """Every canary the attacker must never see: every workspace's but its own session's, the
        runner's environment and state directory, and (unless it is acme) acme's audit trail."""
        tenant = attacker.tenant if attacker else "globex"
        workspace = attacker.workspace if attacker else ""
        out = [self.env_canary, self.state_canary]
        for tree in (self.acme, self.acme2, self.globex):
            if (tree.tenant, tree.workspace) != (tenant, workspace):
                out += [tree.content, tree.file_name, tree.dir_name]
        if tenant != "acme":
            out.append(self.audit_canary)
        return out

    def assert_no_leak(self, text: str, what: str, attacker: Agent | None = None) -> None:
        lowered = text.lower()
        for secret in self.victim_canaries(attacker):
            # The random part alone is enough to identify the canary (and survives case changes).
            assert secret[-16:].lower() not in lowered, f"{what}: victim canary {secret} leaked: {text[:2000]}"

    def assert_victims_unchanged(self) -> None:
        for tree in (self.acme, self.acme2):
            assert snapshot(tree.root) == self.victim_snapshots[tree.workspace], f"{tree.root} changed"

    def attacker_audit_text(self, tenant: str = "globex") -> str:
        key = self.admin_key(tenant)
        texts, after = [], 0
        while True:
            response = httpx.get(self.server.api_url + f"/audit?after_seq={after}&limit=10000",
                                 headers={"Authorization": f"Bearer {key}"}, timeout=60)
            assert response.status_code == 200, response.text
            records = response.json()["records"]
            texts.append(response.text)
            if len(records) < 10000:
                return "\n".join(texts)
            after = records[-1]["seq"]

    def stop(self) -> None:
        self.server.stop()


def make_symlink_via_shell(agent: Agent, target: str, name: str) -> None:
    """The attacker plants a symlink in its own workspace with shell.run (ln -s)."""
    parent = os.path.dirname(name)
    mkdir = f"mkdir -p '{parent}' && " if parent else ""
    ran = agent.shell(f"{mkdir}ln -sfn '{target}' '{name}' && ls -l '{name}'")
    assert ran["exit_code"] == 0, ran


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
