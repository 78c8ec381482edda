"""Claims presented to the real binary by an attacker: forged, confused, stale, replayed, misbound.

Every refused case must come back 401 with `WWW-Authenticate` naming the stable code, a JSON-RPC
error message starting with it, no MCP session, and no canary. One runner (the shared harness:
tenants acme and globex, each with workspace `main` holding a canary) for the module; its claim
key set holds the runner's signing key `dev` and a key bound to globex (globex's orchestrator),
written here with `cryptography` so the test can sign whatever an attacker could.

(Ported from the Swift Tests/AttackTests/ClaimAttackTests.swift: one test per Swift test.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from interop_support import LeaseholdServer, error_message, first_message, leasehold_binary, raw_call, raw_initialize

TOKEN_TYPE = "session-claim+jwt"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Key:
    """One Ed25519 claim key, in the runner's key file form."""

    kid: str
    private: Ed25519PrivateKey
    tenant: str | None = None

    @property
    def public_b64(self) -> str:
        return b64url(self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def entry(self) -> dict[str, Any]:
        seed = self.private.private_bytes_raw()
        entry = {"kid": self.kid, "alg": "EdDSA", "public_key": self.public_b64, "private_key": b64url(seed)}
        if self.tenant is not None:
            entry["tenant_id"] = self.tenant
        return entry


def write_key_set(path: Path, keys: list[Key], active: str) -> None:
    path.write_text(json.dumps({"keys": [k.entry() for k in keys], "active_kid": active}))
    path.chmod(0o600)


def jws(header: dict[str, Any], payload: dict[str, Any], sign: Any) -> str:
    """A compact JWS of `header` and `payload` with the signature `sign(signing input)` returns."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    return signing_input + "." + b64url(sign(signing_input.encode()))


@dataclass
class Victim:
    id: str
    lease: str
    claim: str


class Attack:
    def __init__(self, server: LeaseholdServer, dev: Key, globex_key: Key):
        self.server, self.dev, self.globex_key = server, dev, globex_key
        self.acme = self.create_session("acme", "alice")

    def create_session(self, tenant: str, actor: str) -> Victim:
        session, claim = self.server.create_session(tenant_id=tenant, actor_id=actor, workspace_id="main")
        return Victim(session["id"], session["lease"]["id"], claim)

    def claim(self, tenant: str = "acme", actor: str = "alice", workspace: str = "main", session: str | None = None,
              lease: str | None = None, iat: int | None = None, exp: int | None = None, nbf: int | None = None,
              aud: str = "leasehold", iss: str = "leasehold") -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": iss, "aud": aud, "iat": now if iat is None else iat, "nbf": now if nbf is None else nbf,
            "exp": now + 300 if exp is None else exp, "jti": "atk_" + secrets.token_hex(16),
            "session_id": session or self.acme.id, "tenant_id": tenant, "actor_id": actor,
            "workspace_id": workspace, "lease_id": lease or self.acme.lease,
        }

    def sign(self, payload: dict[str, Any], key: Key | None = None, header: dict[str, Any] | None = None) -> str:
        key = key or self.dev
        header = header or {"alg": "EdDSA", "kid": key.kid, "typ": TOKEN_TYPE}
        return jws(header, payload, key.private.sign)

    def initialize(self, claim: str | None, **kw: Any) -> tuple[httpx.Response, str | None]:
        return raw_initialize(self.server.mcp_url, claim, **kw)

    def call(self, method: str, claim: str | None, mcp_session: str, params: Any = None) -> httpx.Response:
        return raw_call(self.server.mcp_url, method, claim, mcp_session, params)

    def expect_refused(self, token: str | None, code: str) -> None:
        """The binary refuses `token` on initialize with 401, WWW-Authenticate and `code`, no canary."""
        response, session = self.initialize(token)
        assert response.status_code == 401, f"{code}: status {response.status_code} body {response.text}"
        assert session is None, f"{code}: an MCP session was assigned"
        challenge = response.headers.get("www-authenticate", "none")
        assert f'error_code="{code}"' in challenge, f"WWW-Authenticate: {challenge}"
        assert error_message(response).startswith(code + ":"), f"message: {error_message(response)}"
        assert "CANARY" not in response.text

    def expect_tools(self, claim: str, mcp_session: str | None) -> None:
        assert mcp_session is not None
        listed = self.call("tools/list", claim, mcp_session)
        assert listed.status_code == 200, listed.text
        assert first_message(listed).get("result", {}).get("tools"), listed.text


@pytest.fixture(scope="module")
def claims_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    base = Path(os.path.realpath(tmp_path_factory.mktemp("forged-claims")))
    # A second, tenant-bound key (globex's orchestrator) sits in the key set beside the dev key.
    dev = Key("dev", Ed25519PrivateKey.generate())
    globex_key = Key("globex-orchestrator", Ed25519PrivateKey.generate(), tenant="globex")
    write_key_set(base / "keys.json", [dev, globex_key], "dev")
    (base / "leasehold.yaml").write_text(f"keys_file: {base / 'keys.json'}\n")
    server = LeaseholdServer(leasehold_binary(), base / "state", config=base / "leasehold.yaml").start()
    try:
        server.canary_workspaces("main")
        yield Attack(server, dev, globex_key)
    finally:
        server.stop()


@pytest.fixture
def attack(claims_runner: Attack) -> Attack:
    """One server per module; every test gets a fresh acme session (alice), as each Swift test did."""
    claims_runner.acme = claims_runner.create_session("acme", "alice")
    return claims_runner


def test_a_valid_claim_is_accepted(attack: Attack) -> None:
    response, session = attack.initialize(attack.acme.claim)
    assert response.status_code == 200, response.text
    assert session is not None


def test_missing_and_malformed_claims(attack: Attack) -> None:
    attack.expect_refused(None, "claim_missing")
    attack.expect_refused("not-a-jwt", "claim_invalid")
    attack.expect_refused("a.b.c", "claim_invalid")
    attack.expect_refused(attack.acme.claim + "x", "claim_invalid")
    attack.expect_refused("A" * 10_000, "claim_invalid")


def test_alg_none_is_refused(attack: Attack) -> None:
    payload = b64url(json.dumps(attack.claim()).encode())
    for alg in ("none", "None", "NONE"):
        header = b64url(f'{{"alg":"{alg}","typ":"session-claim+jwt","kid":"dev"}}'.encode())
        attack.expect_refused(header + "." + payload + ".", "claim_invalid")


def test_hs256_signed_with_the_public_key_is_refused(attack: Attack) -> None:
    # The classic algorithm confusion: an attacker who knows the Ed25519 public key signs HS256 with it
    # (as its base64url text, and as its raw bytes read as text), padded the way a 32-byte secret must be.
    public = attack.dev.public_b64
    for secret in (public, b64url_decode(public).decode("utf-8", "replace")):
        key = (secret + "\0" * 32).encode()
        token = jws({"alg": "HS256", "kid": "dev", "typ": TOKEN_TYPE}, attack.claim(),
                    lambda data, key=key: hmac.new(key, data, hashlib.sha256).digest())
        attack.expect_refused(token, "claim_invalid")


def test_expired_future_and_over_long_claims(attack: Attack) -> None:
    now = int(time.time())
    attack.expect_refused(attack.sign(attack.claim(iat=now - 600, exp=now - 120, nbf=now - 600)), "claim_expired")
    attack.expect_refused(attack.sign(attack.claim(iat=now, exp=now + 600, nbf=now + 300)), "claim_not_yet_valid")
    attack.expect_refused(attack.sign(attack.claim(iat=now + 300, exp=now + 600, nbf=now)), "claim_not_yet_valid")
    attack.expect_refused(attack.sign(attack.claim(iat=now, exp=now + 3600)), "claim_lifetime_exceeded")


def test_wrong_audience_issuer_and_type(attack: Attack) -> None:
    attack.expect_refused(attack.sign(attack.claim(aud="another-service")), "claim_invalid")
    attack.expect_refused(attack.sign(attack.claim(iss="evil")), "claim_invalid")
    jwt_typed = attack.sign(attack.claim(), header={"alg": "EdDSA", "kid": "dev", "typ": "JWT"})
    attack.expect_refused(jwt_typed, "claim_invalid")
    embedded_key = attack.sign(
        attack.claim(), header={"alg": "EdDSA", "kid": "dev", "typ": TOKEN_TYPE, "jwk": {"kty": "OKP"}})
    attack.expect_refused(embedded_key, "claim_invalid")


def test_another_tenants_key_cannot_speak_for_acme(attack: Attack) -> None:
    attack.expect_refused(attack.sign(attack.claim(), key=attack.globex_key), "claim_invalid")


def test_tampered_boundaries_are_refused(attack: Attack) -> None:
    attack.expect_refused(attack.sign(attack.claim(tenant="globex")), "boundary_mismatch")
    attack.expect_refused(attack.sign(attack.claim(actor="mallory")), "boundary_mismatch")
    attack.expect_refused(attack.sign(attack.claim(workspace="other")), "boundary_mismatch")
    attack.expect_refused(attack.sign(attack.claim(session="ses_" + "0" * 32)), "session_not_found")
    # Tampering with the signed payload without re-signing breaks the signature.
    header, payload, signature = attack.acme.claim.split(".")
    altered = {**json.loads(b64url_decode(payload)), "tenant_id": "globex"}
    attack.expect_refused(header + "." + b64url(json.dumps(altered).encode()) + "." + signature, "claim_invalid")


def test_replay_on_a_second_connection_is_refused(attack: Attack) -> None:
    claim = attack.server.mint_claim(attack.acme.id)
    first, session = attack.initialize(claim)
    assert first.status_code == 200, first.text
    attack.expect_refused(claim, "claim_replayed")
    # The first connection keeps working with it.
    attack.expect_tools(claim, session)


def test_another_tenants_key_cannot_burn_a_claim_by_reusing_its_jti(attack: Attack) -> None:
    # globex holds a key bound to globex. Replay bindings once keyed by jti alone: globex could mint
    # a claim for its own session carrying acme's jti, present it first, and acme's claim was then
    # refused as replayed. A jti names a claim only within its verifying key and tenant.
    acme_claim = attack.server.mint_claim(attack.acme.id)
    acme_jti = json.loads(b64url_decode(acme_claim.split(".")[1]))["jti"]
    globex = attack.create_session("globex", "gina")
    squatter = {**attack.claim(tenant="globex", actor="gina", session=globex.id, lease=globex.lease), "jti": acme_jti}
    globex_result, _ = attack.initialize(attack.sign(squatter, key=attack.globex_key))
    assert globex_result.status_code == 200, f"globex's own claim works: {globex_result.text}"

    acme_result, acme_session = attack.initialize(acme_claim)
    assert acme_result.status_code == 200, f"acme's claim was burned: {acme_result.text}"
    attack.expect_tools(acme_claim, acme_session)
    # Replay protection of acme's claim itself is intact: a second connection is still refused.
    attack.expect_refused(acme_claim, "claim_replayed")


def test_revoked_session_and_replaced_lease_are_refused(attack: Attack) -> None:
    victim = attack.create_session("acme", "bob")
    renewed = attack.server.admin("POST", f"/sessions/{victim.id}/lease")
    assert renewed.status_code == 201, renewed.text
    attack.expect_refused(victim.claim, "lease_replaced")
    new_claim = renewed.json()["claim"]
    ok, mcp_session = attack.initialize(new_claim)
    assert ok.status_code == 200, ok.text
    assert mcp_session is not None

    revoked = attack.server.admin("DELETE", f"/sessions/{victim.id}")
    assert revoked.status_code == 200, revoked.text
    # Revoking closed the session's live connection: the client learns at once (404, re-initialize)...
    after_revoke = attack.call("tools/list", new_claim, mcp_session)
    assert after_revoke.status_code == 404, after_revoke.text
    # ...and re-initializing says why.
    reopen, reopened = attack.initialize(new_claim)
    assert reopen.status_code == 401, reopen.text
    assert error_message(reopen).startswith("session_revoked:"), reopen.text
    assert reopened is None


def test_a_claim_in_tool_arguments_is_never_trusted(attack: Attack) -> None:
    _, session = attack.initialize(attack.server.mint_claim(attack.acme.id))
    assert session is not None
    result = attack.call("tools/call", None, session,
                         {"name": "repo.read_file", "arguments": {"path": "secret.txt", "claim": attack.acme.claim}})
    assert result.status_code == 401, result.text
    assert error_message(result).startswith("claim_missing:"), result.text
