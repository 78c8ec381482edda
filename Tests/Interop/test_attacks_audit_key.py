"""Finding 3, through the real binary: the audit chain had no key, so whoever could write the state
directory deleted a record, recomputed the chain, and both `audit verify` and the live runner
accepted the forged head. Now the runner signs checkpoints of its head with a key no worker can
reach, refuses to chain onto a head changed behind its back, and `verify` checks the checkpoints."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from interop_support import TENANT, WORKSPACE

from test_audit import audit_cli, call_tool, open_connection

pytestmark = pytest.mark.anyio

POLL_LIMIT_S = 20.0


def chain_hash(previous: str, seq: int, body: str) -> str:
    """The runner's formula: sha256(previousHash + "\\n" + seq + "\\n" + body), hex."""
    return hashlib.sha256(f"{previous}\n{seq}\n{body}".encode()).hexdigest()


def checkpointed_head(state_dir: Path) -> tuple[int, int]:
    """(last checkpoint seq, last record seq) as stored right now."""
    db = sqlite3.connect(state_dir / "audit.sqlite", timeout=10)
    try:
        checkpoint = db.execute("SELECT COALESCE(MAX(seq), 0) FROM checkpoints").fetchone()[0]
        last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0]
        return checkpoint, last
    finally:
        db.close()


def wait_for_checkpoint_covering(state_dir: Path, seq: int) -> int:
    """Polls (bounded) until a signed checkpoint covers record `seq`; returns the covered seq."""
    deadline = time.monotonic() + POLL_LIMIT_S
    while time.monotonic() < deadline:
        covered, _ = checkpointed_head(state_dir)
        if covered >= seq:
            return covered
        time.sleep(0.05)
    pytest.fail(f"no checkpoint covered record {seq} within {POLL_LIMIT_S}s")


def forge_deletion(state_dir: Path, tenant: str, at_most: int) -> int:
    """Without the key: delete `tenant`'s first record at or below `at_most`, renumber the later
    records and recompute every later hash, so the chain on its own verifies. Returns the seq."""
    db = sqlite3.connect(state_dir / "audit.sqlite", timeout=10, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        victim = db.execute(
            "SELECT seq FROM audit WHERE tenant = ? AND seq <= ? ORDER BY seq LIMIT 1", (tenant, at_most)
        ).fetchone()[0]
        db.execute("DELETE FROM audit WHERE seq = ?", (victim,))
        later = [row[0] for row in db.execute("SELECT seq FROM audit WHERE seq > ? ORDER BY seq", (victim,))]
        for seq in later:  # ascending, so each new number is free
            db.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq - 1, seq))
        previous = "0" * 64 if victim == 1 else db.execute("SELECT hash FROM audit WHERE seq = ?", (victim - 1,)).fetchone()[0]
        for seq, body in db.execute("SELECT seq, body FROM audit WHERE seq >= ? ORDER BY seq", (victim,)).fetchall():
            digest = chain_hash(previous, seq, body)
            db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (previous, digest, seq))
            previous = digest
        db.execute("COMMIT")
        return victim
    finally:
        db.close()


def write_config(tmp_path: Path, **keys: int) -> Path:
    path = tmp_path / "leasehold.json"
    path.write_text(json.dumps(keys))
    return path


async def test_a_recomputed_chain_is_refused_live_and_by_verify(start_server, binary: Path, tmp_path: Path) -> None:
    server = start_server(config=write_config(tmp_path, audit_checkpoint_seconds=1))
    globex_root = server.workspace_dir("globex")
    server.register_workspace(globex_root, tenant="globex")
    _, acme_claim = server.create_session()
    _, globex_claim = server.create_session(tenant_id="globex", actor_id="gina")
    acme_sid = await open_connection(server, acme_claim)
    globex_sid = await open_connection(server, globex_claim)
    ran = await call_tool(server, acme_claim, acme_sid, "repo.read_file", {"path": "README.md"}, 1)
    assert ran["result"].get("isError") is not True, ran
    ran = await call_tool(server, globex_claim, globex_sid, "repo.stat", {"path": "."}, 2)
    assert "result" in ran, ran

    # The key files exist beside the log, the private one owner-only.
    key = server.state_dir / "audit-signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (server.state_dir / "audit-signing.pub").read_text().strip()

    _, last = checkpointed_head(server.state_dir)
    covered = wait_for_checkpoint_covering(server.state_dir, last)
    victim = forge_deletion(server.state_dir, TENANT, covered)
    # A checkpoint may have landed between the wait and the forgery; it covers the victim too.
    covered, forged_last = checkpointed_head(server.state_dir)

    # (a) The runner does not chain onto the forged head: the other tenant's next call and the
    # operator's next admin change are refused audit_unavailable, and nothing is appended.
    refused = await call_tool(server, globex_claim, globex_sid, "repo.stat", {"path": "."}, 3)
    error = refused["result"]["structuredContent"]["error"]
    assert error["code"] == "audit_unavailable", refused
    assert "changed behind the runner's back" in error["message"], error
    created = await server.aadmin(
        "POST", "/sessions", {"tenant_id": TENANT, "actor_id": "alice", "workspace_id": WORKSPACE}
    )
    assert created.status_code == 503 and "audit_unavailable" in created.text, created.text
    assert checkpointed_head(server.state_dir) == (covered, forged_last), "the runner wrote onto the forged head"
    assert any("changed behind the runner's back" in line for line in server.log), server.log[-20:]

    # (b) The chain alone verifies (that was the finding); verify fails on the checkpoint.
    result = audit_cli(binary, server.state_dir, "verify")
    assert result.returncode == 1, result.stdout
    assert f"checkpoint mismatch at record {covered}" in result.stdout, result.stdout
    assert victim <= covered


async def test_verify_with_only_the_public_key(start_server, binary: Path, tmp_path: Path) -> None:
    server = start_server(config=write_config(tmp_path, audit_checkpoint_seconds=3600, audit_checkpoint_records=4))
    for _ in range(6):
        server.create_session()
    server.stop()  # graceful: the final checkpoint signs the rest
    covered, last = checkpointed_head(server.state_dir)
    assert covered == last and last > 4

    auditor = tmp_path / "auditor.pub"
    auditor.write_bytes((server.state_dir / "audit-signing.pub").read_bytes())
    result = audit_cli(binary, server.state_dir, "verify", "--public-key", str(auditor))
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"ok: {last} records") and f"covers records 1-{last}" in result.stdout

    # Another key (RFC 8032's first test key; anyone's but this runner's) does not verify them.
    other = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    (tmp_path / "other.pub").write_text(base64.b64encode(other).decode() + "\n")
    wrong = audit_cli(binary, server.state_dir, "verify", "--public-key", str(tmp_path / "other.pub"))
    assert wrong.returncode == 1 and "not by the given public key" in wrong.stdout, wrong.stdout

    # Deleting every checkpoint (to hide a rewrite) leaves more records than one interval unsigned.
    db = sqlite3.connect(server.state_dir / "audit.sqlite")
    db.execute("DELETE FROM checkpoints")
    db.commit()
    db.close()
    unsigned = audit_cli(binary, server.state_dir, "verify", "--checkpoint-records", "4")
    assert unsigned.returncode == 1 and "no signed checkpoint covers" in unsigned.stdout, unsigned.stdout
    allowed = audit_cli(binary, server.state_dir, "verify", "--checkpoint-records", "4", "--allow-unsigned")
    assert allowed.returncode == 0, allowed.stdout
