"""Unauthenticated refusals through the real binary (issue 14, finding 5): a flood of requests
without a valid claim is counted into the audit trail, not written one durable row each.

On 5850a2b every unauthenticated request was a durable audit row (2.4 KB and an fsync, 450+/s
from one client), which also fed the disk exhaustion of finding 2. Now, per source address and
interval, the first refusal is written as `request.refused` and the rest are counted into one
`request.refused.sampled` record at the interval's end (and at shutdown). Refusals of a claim that
verified (a revoked session, a replay) stay one record each.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx

from attack_support import Agent, World
from interop_support import INITIALIZE_BODY, raw_headers

UNAUTHENTICATED = {"claim_missing", "claim_invalid", "claim_expired", "claim_not_yet_valid", "claim_lifetime_exceeded"}


def start_world(tmp_path: Path, **config: object) -> World:
    path = tmp_path / "leasehold.yaml"
    path.write_text(json.dumps(config))
    return World(Path(os.path.realpath(tmp_path / "world")), config=path)


def exported(world: World) -> list[dict]:
    result = subprocess.run(
        [str(world.server.binary), "audit", "export", "--format", "jsonl", "--state-dir", str(world.state_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["event"] for line in result.stdout.splitlines()]


def from_source(records: list[dict], source: str) -> tuple[list[dict], list[dict]]:
    """The `request.refused` records of unauthenticated requests from `source`, and the sampled ones."""
    single = [r for r in records if r["event"] == "request.refused" and r.get("code") in UNAUTHENTICATED
              and (r.get("detail") or "").startswith(f"from {source}: ")]
    sampled = [r for r in records if r["event"] == "request.refused.sampled"
               and json.loads(r["detail"])["source"] == source]
    return single, sampled


def unauthenticated_rows(records: list[dict]) -> list[dict]:
    """Every record of an unauthenticated refusal, whatever its source."""
    return [r for r in records if r["event"] == "request.refused.sampled"
            or (r["event"] == "request.refused" and r.get("code") in UNAUTHENTICATED)]


def flood(world: World, source: str, count: int) -> None:
    """`count` unauthenticated MCP requests from `source`: half without a claim, half with garbage."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=20) as client:
        for index in range(count):
            claim = None if index % 2 == 0 else f"garbage.{index}.claim"
            response = client.post(world.server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(claim))
            assert response.status_code == 401, response.text


def test_a_flood_of_unauthenticated_requests_is_counted_not_written_row_by_row(tmp_path: Path) -> None:
    world = start_world(tmp_path, audit_unauthenticated_interval_seconds=2)
    try:
        victim = Agent(world, "acme", "w1", actor="victim")
        before = len(exported(world))
        started = time.monotonic()
        flood(world, "127.0.0.2", 1000)
        # The victim is served throughout, and its calls are audited as always.
        answer = victim.call("repo.read_file", {"path": "notes.txt"})
        assert answer.ok()["content"] == world.acme.notes
        victim.audited(answer)

        # Wait (bounded) until the counted refusals have been written.
        deadline = time.monotonic() + 15
        while True:
            records = exported(world)
            single, sampled = from_source(records, "127.0.0.2")
            total = len(single) + sum(json.loads(r["detail"])["count"] for r in sampled)
            if total == 1000 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        intervals = int(elapsed / 2) + 2
        # O(1) rows per interval, not one per request.
        rows = unauthenticated_rows(records[before:])
        assert len(rows) <= 2 * intervals, f"{len(rows)} audit rows for 1000 unauthenticated requests in {elapsed:.1f} s"
        assert total == 1000, f"{total} of 1000 refusals accounted for: {len(single)} single, {len(sampled)} sampled"
        # O(1) rows per interval: at most one single and one sampled record per interval.
        assert len(single) <= intervals and len(sampled) <= intervals, (len(single), len(sampled), elapsed)
        codes: dict[str, int] = {}
        for record in sampled:
            detail = json.loads(record["detail"])
            assert detail["interval_seconds"] == 2 and detail["first"] <= detail["last"], detail
            for code, n in detail["codes"].items():
                codes[code] = codes.get(code, 0) + n
            assert record["decision"] == "refused" and record.get("policy_version"), record
        for record in single:
            codes[record["code"]] = codes.get(record["code"], 0) + 1
        assert codes == {"claim_missing": 500, "claim_invalid": 500}, codes
        print(f"\n1000 unauthenticated requests: {len(rows)} audit rows "
              f"({len(single)} request.refused, {len(sampled)} request.refused.sampled) in {elapsed:.1f} s")
        assert len(rows) == len(single) + len(sampled)

        # Refusals of a claim that verified stay one record each: a revoked session, five times.
        revoked = Agent(world, "globex", "g1", actor="mallory")
        world.server.admin("DELETE", f"/sessions/{revoked.session_id}", expect=200)
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=transport, timeout=20) as client:
            for _ in range(5):
                response = client.post(world.server.mcp_url, json=INITIALIZE_BODY, headers=raw_headers(revoked.claim))
                assert response.status_code == 401 and "session_revoked" in response.text, response.text
        records = exported(world)
        refused = [r for r in records if r["event"] == "request.refused" and r.get("code") == "session_revoked"
                   and r.get("session") == revoked.session_id]
        assert len(refused) == 5, refused

        verify = subprocess.run(
            [str(world.server.binary), "audit", "verify", "--state-dir", str(world.state_dir)],
            capture_output=True, text=True, timeout=60,
        )
        assert verify.returncode == 0 and verify.stdout.startswith("ok: "), verify.stdout + verify.stderr
        victim.close()
    finally:
        world.stop()


def test_counted_refusals_are_written_at_shutdown_and_sources_are_kept_apart(tmp_path: Path) -> None:
    """An interval longer than the run: what was counted is written when the runner stops. Two
    sources are two tallies, each with its own first record."""
    world = start_world(tmp_path, audit_unauthenticated_interval_seconds=3600)
    try:
        before = len(exported(world))
        flood(world, "127.0.0.3", 50)
        flood(world, "127.0.0.4", 20)
        records = exported(world)
        assert len(unauthenticated_rows(records[before:])) == 2, "70 refusals from two sources, before the interval ends"
        single, sampled = from_source(records, "127.0.0.3")
        assert (len(single), len(sampled)) == (1, 0), (single, sampled)
    finally:
        world.stop()
    records = exported(world)
    for source, count in (("127.0.0.3", 50), ("127.0.0.4", 20)):
        single, sampled = from_source(records, source)
        assert len(single) == 1, single
        assert [json.loads(r["detail"])["count"] for r in sampled] == [count - 1], sampled
