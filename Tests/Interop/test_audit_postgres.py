"""`leasehold audit verify|tail|export --store postgres://...` against a cluster's audit trail in a
throwaway PostgreSQL (scripts/pg-throwaway.sh). The trail is written here by an independent Python
implementation of the chain (sha256(prev_hash + "\\n" + seq + "\\n" + body)), so the binary's verify
is checked against the documented format, not against its own writer."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from interop_support import REPO_ROOT

GENESIS = "0" * 64


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    directory = tmp_path_factory.mktemp("pg")
    port = free_port()
    script = str(REPO_ROOT / "scripts" / "pg-throwaway.sh")
    subprocess.run(["bash", script, "start", str(directory), str(port)], check=True, capture_output=True, timeout=60)
    try:
        yield port, directory
    finally:
        subprocess.run(["bash", script, "stop", str(directory)], capture_output=True, timeout=60)


def psql(port: int, database: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "leasehold", "-d", database, "-v", "ON_ERROR_STOP=1",
         "-tAqc", sql],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def store(server: tuple[int, Path]) -> tuple[int, str, str]:
    port, _ = server
    database = "a_" + uuid.uuid4().hex[:16]
    psql(port, "postgres", f"CREATE DATABASE {database}")
    return port, database, f"postgres://leasehold@127.0.0.1:{port}/{database}"


def audit(binary: Path, tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # --state-dir points at an empty directory: with --store nothing is read from it but the
    # (absent) public key.
    return subprocess.run(
        [str(binary), "audit", *args, "--store", url, "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )


def body(event: str, request: str, node: str, **extra: object) -> str:
    fields = {"event": event, "time": f"2026-12-06T01:00:0{request}.000Z", "tenant": "acme", "session": "s1",
              "tool": "fs.read", "request_id": request, "node": node, **extra}
    return json.dumps(fields, separators=(",", ":"))


def append_chain(port: int, database: str, bodies: list[str]) -> list[str]:
    """Inserts `bodies` as records 1..N the way a node does; returns their hashes."""
    previous, hashes, rows = GENESIS, [], []
    for seq, text in enumerate(bodies, start=1):
        digest = hashlib.sha256(f"{previous}\n{seq}\n{text}".encode()).hexdigest()
        event = json.loads(text)
        quoted = text.replace("'", "''")
        intent = event.get("intent_seq")
        rows.append(
            f"({seq}, '{event['time']}', 'acme', 's1', '{event['event']}', '{quoted}', '{previous}', '{digest}', "
            f"{intent if intent is not None else 'NULL'})"
        )
        hashes.append(digest)
        previous = digest
    psql(port, database,
         "INSERT INTO audit_records (seq, time, tenant, session, event, body, prev_hash, hash, intent_seq) VALUES "
         + ",".join(rows))
    return hashes


def test_verify_tail_and_export_read_the_cluster_trail(binary: Path, tmp_path: Path, store: tuple[int, str, str]) -> None:
    port, database, url = store
    empty = audit(binary, tmp_path, url, "verify")
    # The first node (here the CLI) creates the audit tables.
    assert empty.returncode == 0, empty.stdout + empty.stderr
    assert "ok: 0 records" in empty.stdout
    hashes = append_chain(port, database, [
        body("admin.test", "1", "n1"),
        body("call.intent", "2", "n1"),
        body("call.outcome", "2", "n2", intent_seq=2, outcome="completed"),
        body("call.intent", "3", "n-gone"),
    ])
    result = audit(binary, tmp_path, url, "verify")
    # Record 4's node has no live runner: its outcome is unknown (exit 2).
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"ok: 4 records (head {hashes[-1]})" in result.stdout
    assert "calls: 2 intents, 1 with outcome unknown, 0 in flight" in result.stdout
    assert "outcome unknown: record 4: fs.read, tenant acme, session s1, request 3" in result.stdout
    assert audit(binary, tmp_path, url, "verify", "--allow-unknown-outcomes").returncode == 0

    tail = audit(binary, tmp_path, url, "tail", "-n", "2")
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(line)["seq"] for line in tail.stdout.splitlines()] == [3, 4]
    export = audit(binary, tmp_path, url, "export", "--format", "jsonl")
    assert [json.loads(line)["hash"] for line in export.stdout.splitlines()] == hashes


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE audit_records SET body = replace(body, '\"n1\"', '\"n9\"') WHERE seq = 2",
         "bad record 2: contents do not match the record's hash"),
        ("DELETE FROM audit_records WHERE seq = 2", "bad record 3: expected record 2 here, found 3"),
    ],
)
def test_verify_names_the_tampered_record(
    binary: Path, tmp_path: Path, store: tuple[int, str, str], tamper: str, expected: str
) -> None:
    port, database, url = store
    assert audit(binary, tmp_path, url, "verify").returncode == 0
    append_chain(port, database, [body("admin.test", str(index), "n1") for index in range(1, 5)])
    psql(port, database, tamper)
    result = audit(binary, tmp_path, url, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout


def test_a_bad_store_url_is_refused_with_its_reason(binary: Path, tmp_path: Path) -> None:
    result = audit(binary, tmp_path, "postgres://127.0.0.1/db", "verify")
    assert result.returncode != 0
    assert "names no user" in result.stderr
