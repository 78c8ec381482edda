"""OAuth 2.0 token exchange (RFC 8693) at `POST /oauth2/token`, through the real binary.

An orchestrator trades a JWT from an issuer the runner trusts (`oauth.issuers` in leasehold.yaml),
or a tenant admin key, for a claim of one session (`scope=session:<id>`). Run alone with
`.venv/bin/pytest clients/python/tests/test_token_exchange.py`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from leasehold_client import (
    GRANT_TYPE_TOKEN_EXCHANGE,
    TOKEN_TYPE_JWT,
    TOKEN_TYPE_SESSION_CLAIM,
    AsyncLeasehold,
    ExchangedClaim,
    Leasehold,
    OAuthError,
)
from leasehold_client.mcp import connect_with_claim

from conftest import Runner, start_runner

ISSUER = "https://orchestrator.example.test"
AUDIENCE = "leasehold-test"
KID = "orchestrator-1"
SYSTEM = {"system.search_tools", "system.execute_tool"}


class Issuer:
    """An ES256 signing key and the JWTs an orchestrator's identity provider would issue."""

    def __init__(self, kid: str = KID, issuer: str = ISSUER) -> None:
        self.kid = kid
        self.issuer = issuer
        self.key = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, use="sig", alg="ES256")
        return jwk

    def token(self, tenant_id: str = "acme", **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": AUDIENCE, "sub": "orchestrator-7", "tenant_id": tenant_id,
            "iat": now, "nbf": now, "exp": now + 300, "jti": f"jti-{time.monotonic_ns()}",
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})


TRUSTED = Issuer()


@pytest.fixture(scope="module")
def exchange_runner(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Runner]:
    directory = Path(os.path.realpath(tmp_path_factory.mktemp("exchange")))
    jwks = directory / "jwks.json"
    jwks.write_text(json.dumps({"keys": [TRUSTED.jwk()]}))
    oauth = {"issuers": [{"issuer": ISSUER, "jwks_file": str(jwks), "audience": AUDIENCE, "tenant_claim": "tenant_id"}]}
    started = start_runner(directory, extra_config={"oauth": oauth})
    try:
        yield started
    finally:
        started.server.stop()
        if request.session.testsfailed:
            print("\n--- leasehold stderr ---\n" + "\n".join(started.server.log[-100:]))


@pytest.fixture
def lh(exchange_runner: Runner) -> Iterator[Leasehold]:
    with exchange_runner.client() as client:
        yield client


@pytest.fixture
def session_id(lh: Leasehold) -> Iterator[str]:
    created = lh.sessions.create(
        tenant_id="acme", workspace_id="w1", actor_id="alice", allowed_tool_names=["kb.*"],
        denied_tool_names=["kb.internal_*", "kb.publish"],
    )
    yield created.id
    lh.sessions.revoke(created.id)


def _refused(error: str, call: Any) -> OAuthError:
    with pytest.raises(OAuthError) as refused:
        call()
    assert refused.value.error == error, (refused.value.error, refused.value.description)
    assert refused.value.status == 400
    return refused.value


def _check_claim(exchanged: ExchangedClaim, session_id: str) -> None:
    assert exchanged.issued_token_type == TOKEN_TYPE_SESSION_CLAIM
    assert exchanged.token_type.lower() == "bearer"
    assert exchanged.scope == f"session:{session_id}" and exchanged.session_id == session_id
    assert 0 < exchanged.expires_in <= 900
    assert exchanged.access_token.count(".") == 2


async def _tool_names(url: str, claim: str) -> set[str]:
    async with connect_with_claim(url, claim) as mcp:
        return {tool.name for tool in (await mcp.list_tools()).tools}


# Metadata ----------------------------------------------------------------------------------------


def test_metadata_names_the_token_endpoint(lh: Leasehold) -> None:
    metadata = lh.oauth.metadata()
    assert metadata.token_endpoint == lh.base_url + "/oauth2/token"
    assert GRANT_TYPE_TOKEN_EXCHANGE in metadata.grant_types_supported
    assert metadata.issuer


# Success -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_valid_jwt_gives_a_claim_that_works_on_the_mcp_endpoint(lh: Leasehold, session_id: str) -> None:
    exchanged = lh.oauth.exchange(TRUSTED.token(), session_id, resource=lh.mcp_url)
    _check_claim(exchanged, session_id)
    assert await _tool_names(lh.mcp_url, exchanged.claim) == SYSTEM | {"kb.finance", "kb.support_faq", "kb.support_billing"}


@pytest.mark.anyio
async def test_async_client_exchange_with_audience_and_requested_type(exchange_runner: Runner, session_id: str) -> None:
    # The exchange needs no admin key on the client.
    async with AsyncLeasehold(exchange_runner.base_url, None) as anonymous:
        exchanged = await anonymous.oauth.exchange(
            TRUSTED.token(), session_id, subject_token_type=TOKEN_TYPE_JWT,
            requested_token_type=TOKEN_TYPE_SESSION_CLAIM,
        )
        _check_claim(exchanged, session_id)
        assert "kb.finance" in await _tool_names(anonymous.mcp_url, exchanged.claim)


@pytest.mark.anyio
async def test_tenant_admin_key_of_the_session_tenant_works(exchange_runner: Runner, lh: Leasehold, session_id: str) -> None:
    exchanged = lh.oauth.exchange(exchange_runner.tenant_keys["acme"], session_id, subject_token_type="admin_key")
    _check_claim(exchanged, session_id)
    assert "kb.finance" in await _tool_names(lh.mcp_url, exchanged.claim)


# Refusals ----------------------------------------------------------------------------------------


def test_expired_jwt_is_invalid_grant(lh: Leasehold, session_id: str) -> None:
    now = int(time.time())
    expired = TRUSTED.token(iat=now - 3600, nbf=now - 3600, exp=now - 1800)
    _refused("invalid_grant", lambda: lh.oauth.exchange(expired, session_id))


def test_wrong_audience_is_invalid_grant(lh: Leasehold, session_id: str) -> None:
    _refused("invalid_grant", lambda: lh.oauth.exchange(TRUSTED.token(aud="someone-else"), session_id))


def test_unknown_issuer_is_invalid_grant(lh: Leasehold, session_id: str) -> None:
    _refused("invalid_grant", lambda: lh.oauth.exchange(TRUSTED.token(iss="https://evil.example.test"), session_id))


def test_jwt_signed_by_another_key_is_invalid_grant(lh: Leasehold, session_id: str) -> None:
    # The trusted issuer's name and key id, another key's signature.
    forged = Issuer(kid=KID).token()
    _refused("invalid_grant", lambda: lh.oauth.exchange(forged, session_id))
    # A key id the issuer's JWKS does not hold.
    _refused("invalid_grant", lambda: lh.oauth.exchange(Issuer(kid="rogue").token(), session_id))


def test_other_tenant_jwt_is_invalid_grant(lh: Leasehold, session_id: str) -> None:
    _refused("invalid_grant", lambda: lh.oauth.exchange(TRUSTED.token(tenant_id="globex"), session_id))
    _refused("invalid_grant", lambda: lh.oauth.exchange(TRUSTED.token(tenant_id=None), session_id))


def test_other_tenant_admin_key_is_invalid_grant(exchange_runner: Runner, lh: Leasehold, session_id: str) -> None:
    globex_key = exchange_runner.tenant_keys["globex"]
    _refused("invalid_grant", lambda: lh.oauth.exchange(globex_key, session_id, subject_token_type="admin_key"))
    _refused("invalid_grant", lambda: lh.oauth.exchange("lh_tk_not_a_key", session_id, subject_token_type="admin_key"))


def test_revoked_session_is_invalid_grant(lh: Leasehold) -> None:
    created = lh.sessions.create(tenant_id="acme", workspace_id="w1", actor_id="alice")
    lh.sessions.revoke(created.id)
    _refused("invalid_grant", lambda: lh.oauth.exchange(TRUSTED.token(), created.id))


def test_resource_other_than_the_mcp_endpoint_is_invalid_target(lh: Leasehold, session_id: str) -> None:
    _refused(
        "invalid_target",
        lambda: lh.oauth.exchange(TRUSTED.token(), session_id, resource="https://elsewhere.example.test/mcp"),
    )


def test_wrong_grant_type_is_unsupported_grant_type(exchange_runner: Runner, session_id: str) -> None:
    form = {
        "grant_type": "client_credentials", "subject_token": TRUSTED.token(), "subject_token_type": TOKEN_TYPE_JWT,
        "scope": f"session:{session_id}",
    }
    response = httpx.post(exchange_runner.base_url + "/oauth2/token", data=form, timeout=10)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "unsupported_grant_type"


def test_missing_subject_token_is_invalid_request(exchange_runner: Runner, session_id: str) -> None:
    form = {"grant_type": GRANT_TYPE_TOKEN_EXCHANGE, "subject_token_type": TOKEN_TYPE_JWT, "scope": f"session:{session_id}"}
    response = httpx.post(exchange_runner.base_url + "/oauth2/token", data=form, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request", response.text


def test_error_body_shape(lh: Leasehold, session_id: str) -> None:
    error = _refused("invalid_grant", lambda: lh.oauth.exchange(TRUSTED.token(aud="x"), session_id))
    assert isinstance(error.body, dict) and set(error.body) >= {"error"}
    assert error.description is None or isinstance(error.description, str)


# The test's own issuer (runs without the endpoint) --------------------------------------------------


def test_issuer_tokens_verify_against_the_jwks_file_contents() -> None:
    """What the runner is configured with verifies what the tests send (so a refusal above is the
    runner's decision, not a broken fixture)."""
    keys = jwt.PyJWKSet.from_dict({"keys": [TRUSTED.jwk()]})
    token = TRUSTED.token()
    assert jwt.get_unverified_header(token)["kid"] == KID
    claims = jwt.decode(token, keys[KID].key, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["tenant_id"] == "acme" and claims["sub"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(Issuer(kid=KID).token(), keys[KID].key, algorithms=["ES256"], audience=AUDIENCE)
    with pytest.raises(jwt.ExpiredSignatureError):
        now = int(time.time())
        jwt.decode(TRUSTED.token(iat=now - 3600, nbf=now - 3600, exp=now - 1800), keys[KID].key,
                   algorithms=["ES256"], audience=AUDIENCE)
