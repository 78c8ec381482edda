"""`/metrics` of a real runner, parsed with the official Prometheus client's parser and checked
against the calls made: operation durations by method, tool, tier and outcome; refusals by code;
workers, audit commits; who may read it (the operator key on the main listener, anyone on the
`--metrics` listener); and that no tenant, claim or file content is in a label unless per-tenant
labels are configured."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from interop_support import (
    OPERATOR_KEY,
    POLICIES_DIR,
    TENANT,
    LeaseholdServer,
    assert_not_in_scope,
    assert_read_fixture,
    assert_refused,
    http_mcp,
    raw_headers,
    raw_post,
)

pytestmark = pytest.mark.anyio

METRICS_LINE = re.compile(r"leasehold: metrics on (http://127\.0\.0\.1:\d+/metrics)")


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of an exposition, parsed by prometheus_client (which rejects malformed text)."""
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def value(parsed: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(v for n, l, v in parsed if n == name and all(l.get(k) == want for k, want in labels.items()))


def start(binary: Path, state_dir: Path, workspace_root: Path, config: Path | None = None) -> tuple[LeaseholdServer, str]:
    server = LeaseholdServer(
        binary, state_dir, POLICIES_DIR, config, extra_args=["--metrics", "127.0.0.1:0"]
    ).start()
    line = server.wait_for_log("leasehold: metrics on")
    assert line is not None, "no metrics listener line"
    match = METRICS_LINE.search(line)
    assert match, line
    server.register_workspace(workspace_root)
    return server, match.group(1)


async def test_metrics_count_the_calls_made(binary: Path, state_dir: Path, workspace_root: Path) -> None:
    server, metrics_url = start(binary, state_dir, workspace_root)
    try:
        _, claim = server.create_session(denied_tool_names=["shell.*"])
        async with http_mcp(server.mcp_url, claim) as conn:
            await conn.session.list_tools()
            for _ in range(3):
                assert_read_fixture(await conn.session.call_tool("repo.read_file", {"path": "README.md"}))
            await assert_not_in_scope(conn.session, "shell.run", {"command": "id"})
            await assert_not_in_scope(conn.session, "made.up_tool_name_1")
            await assert_not_in_scope(conn.session, "made.up_tool_name_2")
            # A claim that does not verify: refused before any session is known.
            response = await raw_post(
                server.mcp_url, {"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
                raw_headers("not-a-claim", conn.mcp_session_id, conn.protocol_version),
            )
            assert_refused(response, "claim_invalid")
            # A refusal at the HTTP edge, before any claim is read.
            foreign = await raw_post(
                server.mcp_url, {"jsonrpc": "2.0", "id": 8, "method": "tools/list"},
                {**raw_headers(claim, conn.mcp_session_id, conn.protocol_version), "Origin": "https://evil.example"},
            )
            assert foreign.status_code == 403, foreign.text

        async with httpx.AsyncClient(timeout=10) as client:
            open_text = (await client.get(metrics_url)).text
            main = f"{server.base_url}/metrics"
            # On the main listener: the operator key only.
            assert (await client.get(main)).status_code == 401
            assert (await client.get(main, headers={"Authorization": f"Bearer {claim}"})).status_code == 401
            keyed = await client.get(main, headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
            assert keyed.status_code == 200 and keyed.headers["content-type"].startswith("text/plain")
    finally:
        server.stop()

    parsed = samples(open_text)
    duration = "mcp_server_operation_duration_seconds_count"
    assert value(parsed, duration, mcp_method_name="tools/call", gen_ai_tool_name="repo.read_file", outcome="ok") == 3
    assert value(parsed, duration, mcp_method_name="tools/call", gen_ai_tool_name="repo.read_file", leasehold_tier="read") == 3
    assert value(parsed, duration, mcp_method_name="tools/list") >= 1
    assert value(parsed, duration, mcp_method_name="tools/call", gen_ai_tool_name="shell.run", outcome="refused") == 1
    # Made-up names share one series: a caller cannot grow the series count.
    assert value(parsed, duration, gen_ai_tool_name="_unknown", outcome="refused") == 2
    assert not any("made.up" in v for _, labels, _ in parsed for v in labels.values())
    # The conventions' buckets, in seconds.
    buckets = {l["le"] for n, l, _ in parsed if n == "mcp_server_operation_duration_seconds_bucket"}
    assert {"0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1.0", "300.0", "+Inf"} <= buckets, buckets

    assert value(parsed, "leasehold_refusals_total", code="tool_not_in_scope") == 3
    assert value(parsed, "leasehold_refusals_total", code="claim_invalid") == 1
    assert value(parsed, "leasehold_refusals_total", code="forbidden_origin") == 1

    assert value(parsed, "leasehold_workers_spawned_total") >= 1
    assert value(parsed, "leasehold_worker_spawn_duration_seconds_count") >= 1
    assert value(parsed, "leasehold_workers_live") >= 0
    assert value(parsed, "leasehold_audit_commit_batch_size_count") >= 1
    assert value(parsed, "leasehold_audit_commit_duration_seconds_count") >= 1
    assert value(parsed, "leasehold_mcp_connections_open") >= 0
    assert value(parsed, "leasehold_approvals_pending") == 0

    # No tenant, claim or file content anywhere in the exposition.
    assert claim not in open_text
    assert "interop fixture" not in open_text
    assert not any(TENANT == v for _, labels, _ in parsed for v in labels.values()), "a tenant id labels a series"
    assert "tenant" not in {k for _, labels, _ in parsed for k in labels}


async def test_per_tenant_labels_are_an_explicit_option(
    binary: Path, state_dir: Path, workspace_root: Path, tmp_path: Path
) -> None:
    config = tmp_path / "leasehold.yaml"
    config.write_text("metrics:\n  per_tenant_labels: true\n")
    server, metrics_url = start(binary, state_dir, workspace_root, config)
    try:
        _, claim = server.create_session()
        async with http_mcp(server.mcp_url, claim) as conn:
            assert_read_fixture(await conn.session.call_tool("repo.read_file", {"path": "README.md"}))
        async with httpx.AsyncClient(timeout=10) as client:
            parsed = samples((await client.get(metrics_url)).text)
    finally:
        server.stop()
    duration = "mcp_server_operation_duration_seconds_count"
    assert value(parsed, duration, gen_ai_tool_name="repo.read_file", tenant=TENANT) == 1
    assert value(parsed, "leasehold_workers_spawned_total", tenant=TENANT) >= 1


def test_an_unknown_metrics_key_is_refused(binary: Path, state_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "leasehold.yaml"
    config.write_text("metrics:\n  per_tenant_label: true\n")
    server = LeaseholdServer(binary, state_dir, POLICIES_DIR, config)
    with pytest.raises(BaseException):
        server.start()
    assert any('unknown key "per_tenant_label"' in line for line in server.log), server.log[-5:]
