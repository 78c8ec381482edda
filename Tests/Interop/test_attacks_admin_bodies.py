"""Admin API request bodies are strict, through the real binary with two tenants (acme, globex).

A member a body's schema does not name is refused 400 `invalid_request` with the member named, and
nothing is created or changed: a misspelt `denied_tool_name` must not be dropped and leave a session
wider than its operator wrote. The operations come from docs/admin-api.yaml, so an operation added
there is attacked here without a new case (and fails loudly if this file cannot reach it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from interop_support import LeaseholdServer
from test_attacks_console import World as ConsoleWorld
from test_attacks_console import start_world

DOC = Path(__file__).resolve().parents[2] / "docs" / "admin-api.yaml"
HTTP_METHODS = ("get", "put", "post", "patch", "delete")
UNKNOWN = "strict_probe_unknown"
# A valid value for each field a minimal body must carry, by name (acme's session is the target).
REQUIRED_VALUES: dict[str, Any] = {"tenant_id": "acme", "actor_id": "alice", "workspace_id": "w1"}


@dataclass(frozen=True)
class BodyOperation:
    method: str
    path: str
    media_type: str
    schema: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.media_type})"


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def json_body_operations() -> list[BodyOperation]:
    """Every /api/v1 operation of the document with a JSON request body, once per JSON media type."""
    spec = yaml.safe_load(DOC.read_text())
    found = []
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            body = item.get(method, {}).get("requestBody")
            if not path.startswith("/api/v1/") or body is None:
                continue
            for media_type, content in body["content"].items():
                if "json" in media_type:
                    found.append(BodyOperation(method.upper(), path, media_type, _resolve(spec, content["schema"])))
    return found


def minimal_body(operation: BodyOperation) -> dict[str, Any]:
    missing = [name for name in operation.schema.get("required", []) if name not in REQUIRED_VALUES]
    assert not missing, f"{operation}: add a valid value for {missing} to REQUIRED_VALUES"
    return {name: REQUIRED_VALUES[name] for name in operation.schema.get("required", [])}


def probes(operation: BodyOperation) -> list[tuple[str, dict[str, Any]]]:
    """(the member the runner must name, the body): one unknown top-level member, every known member
    misspelt (its last letter dropped, a valid-looking value), and one unknown member inside each
    nested object of the schema."""
    base = minimal_body(operation)
    found = [(UNKNOWN, {**base, UNKNOWN: True})]
    for name in operation.schema.get("properties", {}):
        found.append((name[:-1], {**base, name[:-1]: ["x"]}))
    for name, schema in operation.schema.get("properties", {}).items():
        if schema.get("type") == "object" or "properties" in schema:
            found.append((UNKNOWN, {**base, name: {UNKNOWN: True}}))
    return found


class World(ConsoleWorld):
    """The console attacks' runner (acme/w1, globex/g1, kb.publish needs approval, a key per tenant),
    with an acme session, a globex one and a pending approval to aim bodies at."""

    def __init__(self, server: LeaseholdServer):
        super().__init__(server)
        self.acme_session, claim = server.create_session(allowed_tool_names=["kb.*"])
        self.globex_session, _ = self.session("globex")
        self.approval_id = self.ask_approval(claim, {"page": "p"})
        self.path_values = {"id": {"sessions": self.acme_session["id"], "approvals": self.approval_id},
                            "tenant_id": "acme", "workspace_id": "w1"}

    def url_of(self, operation: BodyOperation) -> str:
        parts = []
        for part in operation.path.removeprefix("/api/v1").split("/"):
            if part.startswith("{"):
                value = self.path_values.get(part[1:-1])
                if isinstance(value, dict):
                    value = value.get(parts[1])
                assert value is not None, f"{operation}: add a value for the path parameter {part} to World.path_values"
                part = value
            parts.append(part)
        return "/".join(parts)

    def state(self) -> dict[str, Any]:
        """What any admin change would show: the audit trail (every change is recorded), both
        tenants' sessions, the workspaces and the approvals."""
        admin = self.server.admin
        seqs: list[int] = []
        while True:
            records = admin("GET", f"/audit?after_seq={seqs[-1] if seqs else 0}", expect=200).json()["records"]
            if not records:
                break
            seqs += [record["seq"] for record in records]
        return {
            "audit": seqs,
            "sessions": [admin("GET", f"/sessions/{s['id']}", expect=200).json() for s in (self.acme_session, self.globex_session)],
            "workspaces": admin("GET", "/workspaces", expect=200).json(),
            "approvals": admin("GET", "/approvals", expect=200).json(),
        }

    def send(self, method: str, path: str, body: Any, media_type: str = "application/json",
             key: str | None = None) -> httpx.Response:
        headers = {"Content-Type": media_type, **self.server._headers(key)}
        return httpx.request(method, self.server.api_url + path, json=body, headers=headers, timeout=20)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = start_world(Path(os.path.realpath(tmp_path_factory.mktemp("admin-bodies"))))
    try:
        yield World(server)
    finally:
        server.stop()


def assert_refused_naming(response: httpx.Response, member: str, what: str) -> None:
    assert response.status_code == 400, f"{what}: {response.status_code} {response.text}"
    error = response.json()["error"]
    assert error["code"] == "invalid_request", f"{what}: {error}"
    assert f'unknown field "{member}"' in error["message"], f"{what}: {error}"


def test_the_document_names_the_body_operations() -> None:
    found = {(op.method, op.path) for op in json_body_operations()}
    assert {("POST", "/api/v1/workspaces"), ("POST", "/api/v1/sessions"), ("PATCH", "/api/v1/sessions/{id}"),
            ("POST", "/api/v1/sessions/{id}/claims"), ("POST", "/api/v1/sessions/{id}/lease"),
            ("POST", "/api/v1/approvals/{id}/grant"), ("POST", "/api/v1/approvals/{id}/deny")} <= found, found


@pytest.mark.parametrize("operation", json_body_operations(), ids=str)
def test_every_body_with_an_unknown_member_is_refused_and_changes_nothing(world: World, operation: BodyOperation) -> None:
    before = world.state()
    for member, body in probes(operation):
        response = world.send(operation.method, world.url_of(operation), body, operation.media_type)
        assert_refused_naming(response, member, f"{operation} with {sorted(body)}")
    assert world.state() == before, f"{operation}: a refused body changed something"


def test_a_misspelt_deny_list_creates_no_session(world: World) -> None:
    before = world.state()
    body = {"tenant_id": "acme", "actor_id": "mallory", "workspace_id": "w1", "denied_tool_name": ["shell.*"]}
    response = world.send("POST", "/sessions", body)
    assert_refused_naming(response, "denied_tool_name", "POST /sessions")
    assert "denied_tool_names" in response.json()["error"]["message"]  # the fields are listed
    # The same typo on a scope patch leaves the scope as it was.
    response = world.send("PATCH", f"/sessions/{world.acme_session['id']}", {"denied_tool_name": ["kb.publish"]},
                          "application/merge-patch+json")
    assert_refused_naming(response, "denied_tool_name", "PATCH /sessions/{id}")
    assert world.state() == before


def test_unknown_members_are_refused_whatever_the_key_and_only_after_authentication(world: World) -> None:
    globex_key = world.keys["globex"]
    before = world.state()
    body = {"tenant_id": "globex", "actor_id": "bob", "workspace_id": "g1", "tenant": "acme"}
    assert_refused_naming(world.send("POST", "/sessions", body, key=globex_key), "tenant", "tenant key")
    # No key: 401, the body is not read (nothing about its fields is told to a stranger).
    response = httpx.post(world.server.api_url + "/sessions", json=body, timeout=20)
    assert response.status_code == 401, response.text
    # A member name is echoed quoted, cut and escaped, never raw.
    hostile = "\u202e\n<script>" + "a" * 500
    valid = {"tenant_id": "globex", "actor_id": "bob", "workspace_id": "g1"}
    response = world.send("POST", "/sessions", {**valid, hostile: 1}, key=globex_key)
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and "\n" not in message and "<script>" in message and "\u202e" not in message
    assert "\\u{202e}" in message and "a" * 80 not in message, message
    assert world.state() == before


def test_null_and_absent_optional_fields_still_work(world: World) -> None:
    nulls = {"server_id": None, "bundle_id": None, "allowed_tool_names": None, "denied_tool_names": None,
             "lease_ttl_seconds": None, "claim_ttl_seconds": None}
    created = world.send("POST", "/sessions", {"tenant_id": "globex", "actor_id": "carol", "workspace_id": "g1", **nulls})
    assert created.status_code == 201, created.text
    session_id = created.json()["session"]["id"]
    patched = world.send("PATCH", f"/sessions/{session_id}", {"server_id": None, "denied_tool_names": ["kb.*"]},
                         "application/merge-patch+json")
    assert patched.status_code == 200 and patched.json()["session"]["denied_tool_names"] == ["kb.*"], patched.text
    for path, body in ((f"/sessions/{session_id}/claims", {}), (f"/sessions/{session_id}/claims", {"ttl_seconds": None}),
                       (f"/sessions/{session_id}/lease", {"ttl_seconds": 60})):
        response = world.send("POST", path, body)
        assert response.status_code == 201, f"{path} {body}: {response.text}"
    # No body at all: the claim and lease endpoints take defaults.
    response = httpx.post(world.server.api_url + f"/sessions/{session_id}/claims", headers=world.server._headers(), timeout=20)
    assert response.status_code == 201, response.text


def test_a_renewal_refuses_a_narrowing_it_would_not_apply(world: World) -> None:
    """A renewal's claim is the session's whole scope: `allowed_tools` there was dropped, and the
    caller got a wider claim than it asked for. Now it is refused and the lease is unchanged."""
    before = world.state()
    response = world.send("POST", f"/sessions/{world.acme_session['id']}/lease", {"allowed_tools": ["kb.read"]})
    assert_refused_naming(response, "allowed_tools", "POST /sessions/{id}/lease")
    assert world.state() == before
