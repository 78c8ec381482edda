"""Network grants of stdio upstream servers through the real binary (issue 15): a server whose
`network:` names host:port pairs reaches exactly those, through the runner's egress proxy at
127.0.0.1:3128 inside its own (otherwise empty) network namespace; nothing else, and a server
without `network:` reaches nothing at all.

Two HTTP servers listen on the host's 127.0.0.1: `granted` (named in the grant) and `other` (not).
The upstream is examples/fetch_server.py (FastMCP), which tries urllib through the proxy, a CONNECT
tunnel by hand, direct connections that bypass the proxy, and raw AF_INET sockets.
"""

from __future__ import annotations

import http.server
import secrets
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from attack_support import Agent, World
from interop_support import REPO_ROOT, copy_policies

PYTHON = REPO_ROOT / ".venv-examples" / "bin" / "python"
FETCH_SERVER = REPO_ROOT / "examples" / "fetch_server.py"


class HostServer:
    """A tiny HTTP server on the host's 127.0.0.1 that counts the requests it gets."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.requests.append(self.requestline)
                body = f"{owner.marker} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: run scripts/bootstrap.sh --python", pytrace=False)
    base = Path(tmp_path_factory.mktemp("upstream-network"))
    policies = copy_policies(base / "policies")
    granted = HostServer("granted-" + secrets.token_hex(8))
    other = HostServer("other-" + secrets.token_hex(8))
    command = f"command: [{PYTHON}, {FETCH_SERVER}], mounts: [{REPO_ROOT / 'examples'}, {REPO_ROOT / '.venv-examples'}]"
    config = base / "leasehold.yaml"
    config.write_text(
        "servers:\n"
        f"  - {{id: net, {command}, isolation: tenant, tier: upstream, network: ['127.0.0.1:{granted.port}']}}\n"
        f"  - {{id: nonet, {command}, isolation: session, tier: upstream}}\n"
        f"  - {{id: netses, {command}, isolation: session, tier: upstream, network: ['127.0.0.1:{granted.port}']}}\n"
    )
    world = World(base, policies=policies, config=config)
    world.granted = granted  # type: ignore[attr-defined]
    world.other = other  # type: ignore[attr-defined]
    yield world
    world.stop()
    granted.stop()
    other.stop()


# Socket families no worker gets, granted or not (seccomp answers EAFNOSUPPORT).
NEVER = {"AF_NETLINK": "EAFNOSUPPORT", "AF_PACKET": "EAFNOSUPPORT", "AF_VSOCK": "EAFNOSUPPORT"}


def result(agent: Agent, tool: str, **arguments: Any) -> dict[str, Any]:
    answer = agent.call(tool, arguments)
    assert "structuredContent" in answer.result, answer.message
    return answer.ok()


def test_a_granted_server_reaches_its_granted_host_through_the_proxy(world: World) -> None:
    granted = world.granted  # type: ignore[attr-defined]
    # One process (and one proxy) per tenant; each reaches the granted host on its own.
    for tenant, workspace in (("acme", "w1"), ("globex", "g1")):
        agent = Agent(world, tenant, workspace, actor=f"net-{tenant}")
        try:
            env = result(agent, "net.proxy_env")
            assert env.get("HTTP_PROXY") == env.get("https_proxy") == "http://127.0.0.1:3128", env
            assert env.get("NO_PROXY", "") == "", env
            # Absolute-form GET through the proxy (urllib, http_proxy).
            fetched = result(agent, "net.fetch", url=f"http://127.0.0.1:{granted.port}/plain-{tenant}")
            assert fetched.get("status") == 200, fetched
            assert fetched["body"] == f"{granted.marker} /plain-{tenant}", fetched
            # CONNECT, then bytes spliced both ways.
            tunnelled = result(agent, "net.tunnel", host="127.0.0.1", port=granted.port, path=f"/tunnel-{tenant}")
            assert tunnelled.get("connect", "").startswith("HTTP/1.1 200"), tunnelled
            assert f"{granted.marker} /tunnel-{tenant}" in tunnelled["body"], tunnelled
        finally:
            agent.close()
    # The proxy forwarded origin-form request lines: the host never saw the absolute form.
    assert "GET /plain-acme HTTP/1.1" in granted.requests, granted.requests
    assert not any("http://" in line for line in granted.requests), granted.requests


def test_the_proxy_refuses_every_host_port_not_granted(world: World) -> None:
    granted, other = world.granted, world.other  # type: ignore[attr-defined]
    before = len(other.requests)
    agent = Agent(world, "acme", "w1", actor="net-refused")
    try:
        refused = [
            result(agent, "net.fetch", url=f"http://127.0.0.1:{other.port}/"),
            # The same host by another name is another grant: names are never resolved to match.
            result(agent, "net.fetch", url=f"http://localhost:{granted.port}/"),
            result(agent, "net.fetch", url=f"http://127.0.0.1:{granted.port + 1 if granted.port + 1 != other.port else granted.port + 2}/"),
        ]
        for answer in refused:
            assert answer.get("status") == 403, answer
            assert "egress_denied" in answer["body"], answer
        tunnelled = result(agent, "net.tunnel", host="127.0.0.1", port=other.port)
        assert tunnelled.get("connect", "").startswith("HTTP/1.1 403"), tunnelled
        assert "egress_denied" in tunnelled["body"] and f"127.0.0.1:{other.port}" in tunnelled["body"], tunnelled
    finally:
        agent.close()
    assert len(other.requests) == before, other.requests


def test_direct_connections_that_bypass_the_proxy_fail(world: World) -> None:
    granted, other = world.granted, world.other  # type: ignore[attr-defined]
    before = (len(granted.requests), len(other.requests))
    agent = Agent(world, "globex", "g1", actor="net-direct")
    try:
        # The worker's network namespace holds only lo and the proxy's listener: the host's
        # 127.0.0.1 is not there, and Landlock lets it connect to the proxy's port only.
        for host, port in (("127.0.0.1", granted.port), ("127.0.0.1", other.port), ("10.0.0.1", 80), ("::1", granted.port)):
            answer = result(agent, "net.direct", host=host, port=port)
            assert answer.get("connected") is not True and answer.get("error"), (host, port, answer)
        # Nor may it open a listener of its own.
        assert result(agent, "net.bind", port=8080).get("bound") is not True
        # IP sockets exist for it (that is what the grant adds), no other family does.
        families = result(agent, "net.sockets")
        assert families == {"AF_INET": "ok", "AF_INET6": "ok", "AF_UNIX": "ok", **NEVER}, families
        # The proxy itself is reachable (that is the one way out).
        assert result(agent, "net.direct", host="127.0.0.1", port=3128) == {"connected": True}
    finally:
        agent.close()
    assert (len(granted.requests), len(other.requests)) == before


def test_a_server_without_a_grant_has_no_network_at_all(world: World) -> None:
    granted = world.granted  # type: ignore[attr-defined]
    before = len(granted.requests)
    for tenant, workspace in (("acme", "w1"), ("globex", "g1")):
        agent = Agent(world, tenant, workspace, actor=f"nonet-{tenant}")
        try:
            assert result(agent, "nonet.proxy_env") == {}
            # Its seccomp profile refuses IP sockets outright (the exec profile: AF_UNIX only).
            families = result(agent, "nonet.sockets")
            assert families == {"AF_INET": "EAFNOSUPPORT", "AF_INET6": "EAFNOSUPPORT", "AF_UNIX": "ok", **NEVER}, families
            for host, port in (("127.0.0.1", granted.port), ("127.0.0.1", 3128)):
                answer = result(agent, "nonet.direct", host=host, port=port)
                assert answer.get("error") == "EAFNOSUPPORT", (host, port, answer)
            fetched = result(agent, "nonet.fetch", url=f"http://127.0.0.1:{granted.port}/nonet")
            assert fetched.get("status") is None and fetched.get("error"), fetched
        finally:
            agent.close()
    assert len(granted.requests) == before, granted.requests


def test_a_granted_workers_proxy_ends_with_it_and_its_connections_are_counted(world: World) -> None:
    granted, other = world.granted, world.other  # type: ignore[attr-defined]
    agent = Agent(world, "globex", "g1", actor="netses")
    try:
        assert result(agent, "netses.fetch", url=f"http://127.0.0.1:{granted.port}/ses")["status"] == 200
        assert result(agent, "netses.fetch", url=f"http://127.0.0.1:{other.port}/ses")["status"] == 403
        session = agent.session_id
    finally:
        agent.close()  # revoking the session destroys its process, and with it the proxy
    # The revoke answers once the session's workers are destroyed and audited.
    records = [r["event"] for r in world.server.admin("GET", "/audit?limit=10000").json()["records"]]
    spawned = {r.get("worker_id") for r in records if r["event"] == "worker.spawned" and r.get("session") == session}
    destroyed = [r for r in records if r["event"] == "worker.destroyed" and r.get("worker_id") in spawned]
    assert spawned and destroyed, records[-5:]
    assert any("egress connections: 1 allowed, 1 refused" in (r.get("detail") or "") for r in destroyed), destroyed
