"""OAuth 2.0 Token Exchange (RFC 8693) at /oauth2/token, through the real binary (issue 20).

An orchestrator presents its own token (a JWT from an issuer in `oauth.issuers`, or a tenant admin
key) and gets a session claim for a session of its tenant. Every way a subject token can be wrong
is refused `invalid_grant` (RFC 6749 §5.2 errors), and the claim it gets works on the MCP endpoint
with the official Python client. Who may name a session here: only a subject of its own tenant.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from interop_support import POLICIES_DIR, LeaseholdServer, http_mcp

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ADMIN_KEY_TYPE = "urn:leasehold:params:oauth:token-type:admin-key"
CLAIM_TYPE = "urn:leasehold:params:oauth:token-type:session-claim"
ISSUER = "https://orchestrator.example"
AUDIENCE = "leasehold-token-endpoint"


class Issuer:
    """An orchestrator's signing key and the JWKS Leasehold is given for it."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        return {**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def token(self, tenant: str = "acme", iss: str = ISSUER, aud: str | list[str] = AUDIENCE, exp_in: float = 300,
              **extra: Any) -> str:
        now = int(time.time())
        claims = {"iss": iss, "sub": "orchestrator-1", "aud": aud, "iat": now, "exp": now + int(exp_in),
                  "tenant_id": tenant, **extra}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})


@pytest.fixture
def trusted() -> Issuer:
    return Issuer("orch-1")


@pytest.fixture
def server(tmp_path: Path, trusted: Issuer, start_server) -> LeaseholdServer:
    jwks = tmp_path / "orchestrator-jwks.json"
    jwks.write_text(json.dumps({"keys": [trusted.jwk()]}))
    config = tmp_path / "leasehold.yaml"
    config.write_text(
        "oauth:\n"
        "  issuers:\n"
        f"    - {{issuer: '{ISSUER}', jwks_file: '{jwks}', audience: {AUDIENCE}, tenant_claim: tenant_id}}\n")
    return start_server(config=config)


def exchange(server: LeaseholdServer, **form: str) -> httpx.Response:
    assert server.base_url
    return httpx.post(server.base_url + "/oauth2/token", data=form, timeout=20)


def jwt_form(token: str, session_id: str, **extra: str) -> dict[str, str]:
    return {"grant_type": GRANT, "subject_token": token, "subject_token_type": JWT_TYPE,
            "scope": f"session:{session_id}", **extra}


def refused(response: httpx.Response, error: str) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    return body["error_description"]


@pytest.mark.anyio
async def test_a_jwt_of_a_trusted_issuer_gets_a_claim_that_works(server: LeaseholdServer, trusted: Issuer) -> None:
    session, _ = server.create_session()
    response = exchange(server, **jwt_form(trusted.token(), session["id"], resource=server.mcp_url,
                                           requested_token_type=CLAIM_TYPE))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["issued_token_type"] == CLAIM_TYPE and body["token_type"] == "Bearer", body
    assert body["scope"] == f"session:{session['id']}"
    assert 0 < body["expires_in"] <= 900, body
    async with http_mcp(server.mcp_url, body["access_token"]) as conn:
        assert "repo.read_file" in await conn.tool_names()
    records = server.admin("GET", f"/audit?session_id={session['id']}", expect=200).json()["records"]
    exchanged = [r["event"] for r in records if r["event"]["event"] == "claim.exchanged"]
    assert exchanged and f"iss={ISSUER}" in exchanged[0]["detail"], exchanged
    assert trusted.token() not in json.dumps(records), "the subject token reached the audit trail"


def test_every_wrong_jwt_is_invalid_grant(server: LeaseholdServer, trusted: Issuer, tmp_path: Path) -> None:
    session, _ = server.create_session()
    sid = session["id"]
    stranger = Issuer("orch-1")  # same kid, another key: a forged token
    cases = {
        "expired": trusted.token(exp_in=-60),
        "wrong audience": trusted.token(aud="someone-else"),
        "unknown issuer": trusted.token(iss="https://evil.example"),
        "signed by another key": stranger.token(),
        "another tenant": trusted.token(tenant="globex"),
        "no tenant": trusted.token(tenant=""),
        "not a JWT": "not-a-jwt",
        "unsigned": jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "tenant_id": "acme"},
                               None, algorithm="none"),
    }
    for name, token in cases.items():
        description = refused(exchange(server, **jwt_form(token, sid)), "invalid_grant")
        assert token not in description, f"{name}: the description echoes the token"
    # The claim endpoint says nothing about which session ids exist.
    missing = "ses_" + "0" * 32
    assert refused(exchange(server, **jwt_form(trusted.token(tenant="globex"), sid)), "invalid_grant").replace(sid, "S") == \
        refused(exchange(server, **jwt_form(trusted.token(tenant="globex"), missing)), "invalid_grant").replace(missing, "S")


def test_admin_keys_act_only_for_their_own_tenant(server: LeaseholdServer) -> None:
    session, _ = server.create_session()
    acme = server.admin("POST", "/tenants/acme/admin-keys", expect=201).json()["key"]
    globex = server.admin("POST", "/tenants/globex/admin-keys", expect=201).json()["key"]
    form = {"grant_type": GRANT, "subject_token_type": ADMIN_KEY_TYPE, "scope": f"session:{session['id']}"}
    assert exchange(server, **form, subject_token=acme).status_code == 200
    refused(exchange(server, **form, subject_token=globex), "invalid_grant")
    refused(exchange(server, **form, subject_token="lh_not_a_key"), "invalid_grant")
    # A revoked session gets no claim.
    server.admin("DELETE", f"/sessions/{session['id']}", expect=200)
    refused(exchange(server, **form, subject_token=acme), "invalid_grant")


def test_malformed_requests_get_rfc6749_errors(server: LeaseholdServer, trusted: Issuer) -> None:
    session, _ = server.create_session()
    good = jwt_form(trusted.token(), session["id"])
    refused(exchange(server, **{**good, "grant_type": "client_credentials"}), "unsupported_grant_type")
    refused(exchange(server, **{k: v for k, v in good.items() if k != "subject_token"}), "invalid_request")
    refused(exchange(server, **{**good, "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
            "invalid_request")
    refused(exchange(server, **{**good, "requested_token_type": JWT_TYPE}), "invalid_request")
    refused(exchange(server, **{**good, "scope": "everything"}), "invalid_scope")
    refused(exchange(server, **{**good, "resource": "https://elsewhere.example/mcp"}), "invalid_target")
    refused(exchange(server, **{**good, "audience": "someone-else"}), "invalid_target")
    assert server.base_url
    # A parameter sent twice, and a JSON body instead of a form.
    twice = httpx.post(server.base_url + "/oauth2/token", timeout=20,
                       content="&".join(f"{k}={v}" for k, v in good.items()) + "&scope=session:other",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    refused(twice, "invalid_request")
    refused(httpx.post(server.base_url + "/oauth2/token", json=good, timeout=20), "invalid_request")
    huge = httpx.post(server.base_url + "/oauth2/token", timeout=20, data={**good, "subject_token": "x" * (70 << 10)})
    refused(huge, "invalid_request")


def test_metadata_names_the_token_endpoint(server: LeaseholdServer) -> None:
    assert server.base_url
    meta = httpx.get(server.base_url + "/.well-known/oauth-authorization-server", timeout=20).json()
    assert meta["issuer"] == server.base_url and meta["token_endpoint"] == server.base_url + "/oauth2/token"
    assert meta["grant_types_supported"] == [GRANT]
    resource = httpx.get(server.base_url + "/.well-known/oauth-protected-resource", timeout=20).json()
    assert resource["resource"] == server.mcp_url and resource["authorization_servers"] == [server.base_url]


def test_a_jwks_url_is_fetched_again_for_a_rotated_key(tmp_path: Path, start_server) -> None:
    first, second = Issuer("k-1"), Issuer("k-2")
    served = {"keys": [first.jwk()]}
    fetches: list[str] = []

    class JWKS(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            fetches.append(self.path)
            body = json.dumps(served).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), JWKS)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "leasehold.yaml"
        config.write_text(
            "oauth:\n  issuers:\n"
            f"    - {{issuer: '{ISSUER}', jwks_url: 'http://127.0.0.1:{httpd.server_port}/jwks.json', audience: {AUDIENCE}}}\n")
        server = start_server(config=config)
        assert fetches == ["/jwks.json"], "the JWKS is fetched at start"
        session, _ = server.create_session()
        assert exchange(server, **jwt_form(first.token(), session["id"])).status_code == 200
        # The orchestrator rotates: a token under the new kid makes the runner fetch again.
        served["keys"] = [first.jwk(), second.jwk()]
        assert exchange(server, **jwt_form(second.token(), session["id"])).status_code == 200
        assert len(fetches) == 2, fetches
        # A forged token under yet another kid fetches at most once a minute.
        for _ in range(3):
            refused(exchange(server, **jwt_form(Issuer("k-3").token(), session["id"])), "invalid_grant")
        assert len(fetches) == 2, fetches
    finally:
        httpd.shutdown()


def test_a_bad_oauth_config_is_refused_at_start(tmp_path: Path, binary: Path) -> None:
    secret = tmp_path / "secret-jwks.json"
    secret.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}))
    for text, expected in (
        ("oauth:\n  issuers:\n    - {issuer: x, audience: a}\n", "exactly one of jwks_file and jwks_url"),
        ("oauth:\n  isuers: []\n", 'oauth: unknown key "isuers"'),
        (f"oauth:\n  issuers:\n    - {{issuer: x, audience: a, jwks_file: {tmp_path / 'missing.json'}}}\n", "cannot be read"),
        (f"oauth:\n  issuers:\n    - {{issuer: x, audience: a, jwks_file: {secret}}}\n", "no shared secrets"),
        ("oauth:\n  issuer: ftp://x\n", "oauth.issuer must be an http(s) URL"),
    ):
        config = tmp_path / "leasehold.yaml"
        config.write_text(text)
        done = subprocess.run(
            [str(binary), "serve", "--http", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"),
             "--policies", str(POLICIES_DIR), "--config", str(config)], capture_output=True, text=True, timeout=30)
        output = done.stdout + done.stderr
        assert done.returncode != 0 and expected in output, output
