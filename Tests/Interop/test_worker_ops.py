"""Drives the confined worker binary directly over its fd-3 frame channel (no runner, no
namespaces): every tool's happy paths and refusals, and malformed frames/requests.

The worker is started with fd 3 = one end of a socketpair and fd 4 = a memfd holding a permissive
one-instruction seccomp program, exactly the descriptors the runner gives it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from interop_support import leasehold_binary

# The worker the build put beside `leasehold` (make test builds both), unless named explicitly.
# A missing binary is a broken build: the tests fail on it rather than skip.
WORKER = Path(os.environ.get("LEASEHOLD_WORKER_BIN", "") or leasehold_binary().parent / "leasehold-worker")
if not WORKER.is_absolute():
    WORKER = Path(__file__).resolve().parents[2] / WORKER

HELLO, READY, REQUEST, RESPONSE, ERROR, PROGRESS, CANCEL = 1, 2, 3, 4, 5, 6, 7
PROTOCOL = 2  # Frame.protocolVersion
# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}: BPF_RET|BPF_K, SECCOMP_RET_ALLOW.
ALLOW_ALL = struct.pack("<HBBI", 0x06, 0, 0, 0x7FFF0000)


def encode_frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 1) + bytes([kind]) + payload


class Worker:
    def __init__(self, workspace: Path, *, profile: str = "exec", read_only: bool = False, output_bytes: int = 65536,
                 wall_ms: int = 5000, file_size: int = 1 << 20, environment: dict | None = None, hello: bool = True):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        memfd = os.memfd_create("filter", 0)
        os.write(memfd, ALLOW_ALL)
        # Park both above 3/4 so the dup2s in the child cannot clobber one with the other.
        high_channel = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, 100)
        high_filter = fcntl.fcntl(memfd, fcntl.F_DUPFD_CLOEXEC, 100)

        def child_setup() -> None:
            os.dup2(high_channel, 3)
            os.dup2(high_filter, 4)

        self.process = subprocess.Popen([str(WORKER)], pass_fds=(3, 4), preexec_fn=child_setup,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for fd in (memfd, high_channel, high_filter):
            os.close(fd)
        theirs.close()
        self.sock = ours
        self.sock.settimeout(30)
        if hello:
            body = dict(tier="test", profile=profile, workspace=str(workspace), read_only=read_only,
                        output_bytes=output_bytes, wall_ms=wall_ms, cpu_seconds=10, file_size_bytes=file_size,
                        environment=environment or {"PATH": "/usr/local/bin:/usr/bin:/bin"})
            self.send(HELLO, bytes([PROTOCOL]) + json.dumps(body).encode())
            kind, payload = self.recv()
            assert (kind, payload) == (READY, bytes([PROTOCOL])), (kind, payload)

    def send(self, kind: int, payload: bytes) -> None:
        self.sock.sendall(encode_frame(kind, payload))

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("worker closed the channel")
            data += chunk
        return data

    def recv(self) -> tuple[int, bytes]:
        (length,) = struct.unpack(">I", self._exactly(4))
        body = self._exactly(length)
        return body[0], body[1:]

    def call(self, tool: str, arguments) -> tuple[bool, dict]:
        is_error, _, result = self.call_with_limit(tool, arguments)
        return is_error, result

    def call_with_limit(self, tool: str, arguments) -> tuple[bool, int | None, dict]:
        """The response's flags: bit 0 an error result; bit 2 a tier limit killed the command,
        its kind in the next byte (1 cpu_seconds, 2 file_size_mib, 3 wall_ms)."""
        raw = arguments if isinstance(arguments, bytes) else json.dumps(arguments).encode()
        self.send(REQUEST, tool.encode() + b"\0" + raw)
        kind, payload = self.recv()
        assert kind == RESPONSE, (kind, payload)
        flags = payload[0]
        if flags & 4:
            return bool(flags & 1), payload[1], json.loads(payload[2:])
        return bool(flags & 1), None, json.loads(payload[1:])

    def ok(self, tool: str, arguments) -> dict:
        is_error, result = self.call(tool, arguments)
        assert not is_error, result
        return result

    def refused(self, tool: str, arguments, code: str) -> dict:
        is_error, result = self.call(tool, arguments)
        assert is_error, result
        assert result["error"]["code"] == code, result
        return result["error"]

    def close(self) -> int:
        self.sock.close()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside"
    target.mkdir()
    (target / "secret.txt").write_text("tenant-b secret\n")
    return target


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def worker(ws: Path):
    started = Worker(ws)
    yield started
    assert started.close() == 0


# --- protocol -------------------------------------------------------------------------------------

def test_eof_exits_zero(ws: Path) -> None:
    assert Worker(ws).close() == 0


def test_version_mismatch_is_an_error_frame(ws: Path) -> None:
    w = Worker(ws, hello=False)
    w.send(HELLO, bytes([9]) + b"{}")
    kind, payload = w.recv()
    assert kind == ERROR and json.loads(payload)["code"] == "protocol_mismatch"
    assert w.process.wait(timeout=10) != 0


def test_malformed_frame_is_an_error_frame(ws: Path) -> None:
    worker = Worker(ws)
    worker.sock.sendall(struct.pack(">I", 0))  # zero-length frame
    kind, payload = worker.recv()
    assert kind == ERROR and json.loads(payload)["code"] == "bad_frame"
    assert worker.process.wait(timeout=10) != 0


def test_a_cancel_that_crossed_its_response_is_ignored(ws: Path) -> None:
    """A `cancel` arriving between requests (its call already answered) changes nothing."""
    worker = Worker(ws)
    worker.send(CANCEL, b"")
    assert worker.ok("repo.stat", {"path": "."})["type"] == "dir"
    worker.send(CANCEL, b"")
    worker.send(CANCEL, b"")
    assert worker.ok("repo.stat", {"path": "."})["type"] == "dir"


def test_a_progress_frame_from_the_runner_is_an_error_frame(ws: Path) -> None:
    worker = Worker(ws)
    worker.send(PROGRESS, b"{}")
    kind, payload = worker.recv()
    assert kind == ERROR and json.loads(payload)["code"] == "unexpected_frame"
    assert worker.process.wait(timeout=10) != 0


def test_request_without_separator_is_an_error_frame(ws: Path) -> None:
    worker = Worker(ws)
    worker.send(REQUEST, b"repo.stat")
    kind, payload = worker.recv()
    assert kind == ERROR and json.loads(payload)["code"] == "bad_request"
    assert worker.process.wait(timeout=10) != 0


def test_malformed_json_and_arguments_are_typed_errors(worker: Worker, ws: Path) -> None:
    (ws / "a.txt").write_text("x\n")
    worker.refused("repo.read_file", b"{not json", "invalid_arguments")
    worker.refused("repo.read_file", b"[1,2]", "invalid_arguments")
    assert "bogus" in worker.refused("repo.read_file", {"path": "a.txt", "bogus": 1}, "invalid_arguments")["message"]
    assert "'path'" in worker.refused("repo.read_file", {"path": 7}, "invalid_arguments")["message"]
    assert "'offset'" in worker.refused("repo.read_file", {"path": "a.txt", "offset": -1}, "invalid_arguments")["message"]
    worker.refused("repo.read_file", {"path": "a.txt", "offset": 1e300}, "invalid_arguments")
    worker.refused("repo.read_file", {}, "invalid_arguments")
    worker.refused("repo.nope", {}, "unknown_tool")
    # Still serving after all of that.
    assert worker.ok("repo.read_file", {"path": "a.txt"})["content"] == "x\n"


# --- path refusals shared by every tool --------------------------------------------------------------

def make_hostile_tree(ws: Path, outside: Path) -> None:
    (ws / "inside.txt").write_text("inside\n")
    (ws / "dir").mkdir()
    (ws / "dir" / "nested.txt").write_text("nested\n")
    os.symlink(str(outside / "secret.txt"), ws / "abs_link")
    os.symlink("../outside/secret.txt", ws / "rel_link")
    os.symlink("inside.txt", ws / "good_link")
    os.symlink("dir", ws / "good_dir_link")
    os.symlink("missing.txt", ws / "dangling")
    os.symlink("/dev/zero", ws / "dev_link")
    os.symlink(str(outside), ws / "out_dir")
    os.link(outside / "secret.txt", ws / "hard.txt")
    os.mkfifo(ws / "fifo")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(ws / "sock"))
    server.close()


@pytest.mark.parametrize("path,code", [
    ("/etc/passwd", "path_outside_workspace"),
    ("../outside/secret.txt", "path_outside_workspace"),
    ("dir/../../outside/secret.txt", "path_outside_workspace"),
    ("abs_link", "path_outside_workspace"),
    ("rel_link", "path_outside_workspace"),
    ("out_dir/secret.txt", "path_outside_workspace"),
    ("dev_link", "path_outside_workspace"),
    ("dangling", "not_found"),
    ("hard.txt", "hard_link"),
    ("fifo", "not_regular_file"),
    ("sock", "not_regular_file"),
    ("dir", "is_a_directory"),
    ("inside.txt/x", "not_a_directory"),
    ("a" * 300, "path_too_long"),
    ("a/" * 2100, "path_too_long"),
    ("inside.txt\0", "invalid_arguments"),
])
def test_read_file_refusals(ws: Path, outside: Path, path: str, code: str) -> None:
    make_hostile_tree(ws, outside)
    w = Worker(ws)
    started = time.monotonic()
    error = w.refused("repo.read_file", {"path": path}, code)
    assert time.monotonic() - started < 5  # a FIFO must never hang the worker
    assert "secret" not in error["message"] or "secret" in path
    assert str(outside) not in error["message"]
    assert w.close() == 0


def test_symlinks_that_stay_inside_are_followed(ws: Path, outside: Path) -> None:
    make_hostile_tree(ws, outside)
    w = Worker(ws)
    assert w.ok("repo.read_file", {"path": "good_link"})["content"] == "inside\n"
    assert w.ok("repo.read_file", {"path": "good_dir_link/nested.txt"})["content"] == "nested\n"
    assert w.ok("repo.read_file", {"path": "./dir/../inside.txt"})["content"] == "inside\n"
    w.close()


def test_stat_refusals_and_symlink_target(ws: Path, outside: Path) -> None:
    make_hostile_tree(ws, outside)
    w = Worker(ws)
    link = w.ok("repo.stat", {"path": "abs_link"})  # the link itself, not what it points at
    assert link["type"] == "symlink" and link["target"] == str(outside / "secret.txt")
    assert w.ok("repo.stat", {"path": "fifo"})["type"] == "fifo"
    assert w.ok("repo.stat", {"path": "sock"})["type"] == "socket"
    assert w.ok("repo.stat", {"path": "dir"})["type"] == "dir"
    assert w.ok("repo.stat", {"path": ""})["type"] == "dir"
    info = w.ok("repo.stat", {"path": "inside.txt"})
    assert info["type"] == "file" and info["size"] == 7 and info["nlink"] == 1 and len(info["mode"]) == 4
    w.refused("repo.stat", {"path": "hard.txt"}, "hard_link")
    w.refused("repo.stat", {"path": "out_dir/secret.txt"}, "path_outside_workspace")
    w.refused("repo.stat", {"path": "/"}, "path_outside_workspace")
    w.refused("repo.stat", {"path": ".."}, "path_outside_workspace")
    w.refused("repo.stat", {"path": "nope"}, "not_found")
    w.close()


def test_list_dir_order_depth_and_no_following(ws: Path, outside: Path) -> None:
    make_hostile_tree(ws, outside)
    (ws / "dir" / "deeper").mkdir()
    (ws / "dir" / "deeper" / "leaf.txt").write_text("leaf\n")
    (ws / "a-b").write_text("")
    (ws / ".git").mkdir()
    (ws / ".git" / "HEAD").write_text("ref\n")
    w = Worker(ws)
    top = w.ok("repo.list_dir", {})
    paths = [e["path"] for e in top["entries"]]
    assert paths == sorted(paths, key=lambda p: p.encode())
    assert "dir/nested.txt" not in paths and "dir" in paths
    types = {e["path"]: e["type"] for e in top["entries"]}
    assert types["abs_link"] == "symlink" and types["fifo"] == "fifo" and types["sock"] == "socket"
    hard = next(e for e in top["entries"] if e["path"] == "hard.txt")
    assert hard.get("hard_link") is True and hard.get("size") is None
    deep = [e["path"] for e in w.ok("repo.list_dir", {"depth": 3})["entries"]]
    assert "dir/deeper/leaf.txt" in deep and ".git" in deep and ".git/HEAD" not in deep
    assert not any(p.startswith("out_dir/") or p.startswith("good_dir_link/") for p in deep)
    assert deep == sorted(deep, key=lambda p: p.encode())  # "a-b" sorts before "dir/..." by bytes
    sub = w.ok("repo.list_dir", {"path": "dir", "depth": 2})
    assert [e["path"] for e in sub["entries"]] == ["dir/deeper", "dir/deeper/leaf.txt", "dir/nested.txt"]
    limited = w.ok("repo.list_dir", {"limit": 2})
    assert len(limited["entries"]) == 2 and limited["truncated"] is True
    w.refused("repo.list_dir", {"path": "out_dir"}, "path_outside_workspace")
    w.refused("repo.list_dir", {"path": "inside.txt"}, "not_a_directory")
    w.refused("repo.list_dir", {"depth": 17}, "invalid_arguments")
    w.refused("repo.list_dir", {"limit": 10001}, "invalid_arguments")
    w.close()


# --- read_file -------------------------------------------------------------------------------------

def test_read_file_binary_base64_and_paging(ws: Path) -> None:
    (ws / "bin").write_bytes(b"abc\0def")
    (ws / "latin1").write_bytes(b"caf\xe9\n")
    text = ("é" * 3000 + "\n") * 2  # 2-byte scalars: pages must not split them
    (ws / "big.txt").write_text(text)
    w = Worker(ws, output_bytes=1500)
    w.refused("repo.read_file", {"path": "bin"}, "binary_file")
    w.refused("repo.read_file", {"path": "latin1"}, "binary_file")
    raw = w.ok("repo.read_file", {"path": "bin", "encoding": "base64"})
    assert base64.b64decode(raw["content"]) == b"abc\0def" and raw["encoding"] == "base64"
    pieces, offset = [], 0
    while True:
        page = w.ok("repo.read_file", {"path": "big.txt", "offset": offset})
        assert len(page["content"].encode()) <= 1500
        pieces.append(page["content"])
        if not page["truncated"]:
            break
        assert page["next_offset"] == page["offset"] + page["length"]
        offset = page["next_offset"]
    assert "".join(pieces) == text and len(pieces) > 4
    odd = w.ok("repo.read_file", {"path": "big.txt", "offset": 0, "length": 3})
    assert odd["content"] == "é" and odd["length"] == 2
    past = w.ok("repo.read_file", {"path": "big.txt", "offset": 10**9})
    assert past["content"] == "" and past["truncated"] is False
    w.refused("repo.read_file", {"path": "big.txt", "encoding": "utf16"}, "invalid_arguments")
    w.close()


# --- write_file ------------------------------------------------------------------------------------

def test_write_file(ws: Path, outside: Path) -> None:
    os.symlink(str(outside), ws / "out_dir")
    (ws / "d").mkdir()
    os.mkfifo(ws / "fifo")
    os.symlink("d", ws / "link_to_d")
    w = Worker(ws, file_size=1000)
    created = w.ok("repo.write_file", {"path": "new.txt", "content": "hello"})
    assert created == {"path": "new.txt", "bytes_written": 5, "created": True}
    assert (ws / "new.txt").read_text() == "hello"
    assert stat.S_IMODE((ws / "new.txt").stat().st_mode) == 0o644
    assert w.ok("repo.write_file", {"path": "new.txt", "content": "again"})["created"] is False
    assert (ws / "new.txt").read_text() == "again"
    w.refused("repo.write_file", {"path": "new.txt", "content": "x", "create_only": True}, "already_exists")
    assert (ws / "new.txt").read_text() == "again"
    assert w.ok("repo.write_file", {"path": "b.bin", "content": base64.b64encode(b"\0\1").decode(), "encoding": "base64"})
    assert (ws / "b.bin").read_bytes() == b"\0\1"
    w.refused("repo.write_file", {"path": "b.bin", "content": "***", "encoding": "base64"}, "invalid_arguments")
    w.refused("repo.write_file", {"path": "p/q/r.txt", "content": "x"}, "not_found")
    assert w.ok("repo.write_file", {"path": "p/q/r.txt", "content": "x", "create_parents": True})["created"]
    assert (ws / "p" / "q" / "r.txt").read_text() == "x"
    # Through a symlinked parent pointing outside: refused, nothing written outside.
    w.refused("repo.write_file", {"path": "out_dir/evil.txt", "content": "x"}, "path_outside_workspace")
    w.refused("repo.write_file", {"path": "out_dir/sub/evil.txt", "content": "x", "create_parents": True},
              "path_outside_workspace")
    w.refused("repo.write_file", {"path": "../outside/evil.txt", "content": "x"}, "path_outside_workspace")
    w.refused("repo.write_file", {"path": "/tmp/evil.txt", "content": "x"}, "path_outside_workspace")
    w.refused("repo.write_file", {"path": "/tmp/evil.txt", "content": "x", "create_parents": True},
              "path_outside_workspace")
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    w.refused("repo.write_file", {"path": "d", "content": "x"}, "is_a_directory")
    w.refused("repo.write_file", {"path": "fifo", "content": "x"}, "not_regular_file")
    w.refused("repo.write_file", {"path": "out_dir", "content": "x"}, "not_regular_file")
    w.refused("repo.write_file", {"path": "big", "content": "x" * 1001}, "file_too_large")
    w.refused("repo.write_file", {"path": "a\0b", "content": "x"}, "invalid_arguments")
    # A symlinked parent that stays inside is fine.
    w.ok("repo.write_file", {"path": "link_to_d/in.txt", "content": "ok"})
    assert (ws / "d" / "in.txt").read_text() == "ok"
    leftovers = [p for p in ws.rglob("*") if ".leasehold-" in p.name]
    assert not leftovers
    w.close()


def test_read_only_profiles_refuse_writes(ws: Path) -> None:
    for kwargs in ({"profile": "read"}, {"profile": "write", "read_only": True}):
        w = Worker(ws, **kwargs)
        w.refused("repo.write_file", {"path": "x", "content": "y"}, "read_only_workspace")
        w.refused("repo.apply_patch", {"patch": "--- a/x\n+++ b/x\n"}, "read_only_workspace")
        w.refused("shell.run", {"command": "true"}, "tool_not_supported_by_tier")
        w.close()
    assert not (ws / "x").exists()


# --- apply_patch -----------------------------------------------------------------------------------

TEN = "".join(f"line{i}\n" for i in range(1, 11))


def test_apply_patch_modify_create_delete_rename(ws: Path) -> None:
    (ws / "f.txt").write_text(TEN)
    (ws / "gone.txt").write_text("bye\n")
    (ws / "old.txt").write_text("keep\n")
    (ws / "edit_move.txt").write_text("a\nb\n")
    patch = (
        "diff --git a/f.txt b/f.txt\n--- a/f.txt\n+++ b/f.txt\n"
        "@@ -1,3 +1,3 @@\n line1\n-line2\n+LINE2\n line3\n"
        "@@ -8,3 +8,4 @@\n line8\n line9\n+inserted\n line10\n"
        "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
        "diff --git a/sub/new.txt b/sub/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/sub/new.txt\n"
        "@@ -0,0 +1,2 @@\n+fresh\n+file\n\\ No newline at end of file\n"
        "diff --git a/old.txt b/moved.txt\nsimilarity index 100%\nrename from old.txt\nrename to moved.txt\n"
        "diff --git a/edit_move.txt b/edited.txt\nrename from edit_move.txt\nrename to edited.txt\n"
        "--- a/edit_move.txt\n+++ b/edited.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n"
    )
    w = Worker(ws)
    result = w.ok("repo.apply_patch", {"patch": patch})
    assert result["files"] == [
        {"path": "f.txt", "action": "modified", "hunks": 2},
        {"path": "gone.txt", "action": "deleted", "hunks": 1},
        {"path": "sub/new.txt", "action": "created", "hunks": 1},
        {"path": "moved.txt", "action": "renamed", "hunks": 0},
        {"path": "edited.txt", "action": "renamed", "hunks": 1},
    ]
    assert (ws / "f.txt").read_text() == TEN.replace("line2\n", "LINE2\n").replace("line10\n", "inserted\nline10\n")
    assert not (ws / "gone.txt").exists()
    assert (ws / "sub" / "new.txt").read_text() == "fresh\nfile"
    assert not (ws / "old.txt").exists() and (ws / "moved.txt").read_text() == "keep\n"
    assert (ws / "edited.txt").read_text() == "a\nB\n" and not (ws / "edit_move.txt").exists()
    w.close()


def test_apply_patch_offset_and_plain_diff(ws: Path) -> None:
    (ws / "f.txt").write_text("extra\nextra\n" + TEN)
    w = Worker(ws)
    w.ok("repo.apply_patch", {"patch": "--- f.txt\t2024-01-01\n+++ f.txt\t2024-01-02\n@@ -4,2 +4,2 @@\n line4\n-line5\n+five\n"})
    assert "five\n" in (ws / "f.txt").read_text() and "line5" not in (ws / "f.txt").read_text()
    w.close()


def test_apply_patch_failure_changes_nothing(ws: Path, outside: Path) -> None:
    (ws / "a.txt").write_text(TEN)
    (ws / "b.txt").write_text(TEN)
    (ws / "del.txt").write_text("x\n")
    os.symlink(str(outside), ws / "out_dir")
    before = {p.name: p.read_bytes() for p in ws.iterdir() if p.is_file() and not p.is_symlink()}
    good_a = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n line1\n-line2\n+CHANGED\n"
    bad_b = ("--- a/b.txt\n+++ b/b.txt\n@@ -1,2 +1,2 @@\n line1\n-line2\n+CHANGED\n"
             "@@ -6,2 +6,2 @@\n line6\n-not-in-file\n+X\n")
    extra = ("--- /dev/null\n+++ b/newdir/new.txt\n@@ -0,0 +1 @@\n+n\n"
             "--- a/del.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n")
    w = Worker(ws)
    error = w.refused("repo.apply_patch", {"patch": extra + good_a + bad_b}, "patch_failed")
    assert error["file"] == "b.txt" and error["hunk"] == 2
    after = {p.name: p.read_bytes() for p in ws.iterdir() if p.is_file() and not p.is_symlink()}
    assert after == before and not (ws / "newdir").exists()
    # Creating through a symlink that leaves the workspace fails at staging: still nothing changed.
    escape = good_a + "--- /dev/null\n+++ b/out_dir/evil.txt\n@@ -0,0 +1 @@\n+evil\n"
    w.refused("repo.apply_patch", {"patch": escape}, "path_outside_workspace")
    assert (ws / "a.txt").read_text() == TEN and sorted(os.listdir(outside)) == ["secret.txt"]
    w.refused("repo.apply_patch", {"patch": "--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+dup\n"}, "patch_failed")
    w.refused("repo.apply_patch", {"patch": "not a diff"}, "patch_failed")
    w.refused("repo.apply_patch", {"patch": "--- a/a.txt\n+++ b/a.txt\n@@ -1,5 +1,5 @@\n line1\n"}, "patch_failed")
    w.refused("repo.apply_patch", {"patch": "--- a/../x\n+++ b/../x\n@@ -1 +1 @@\n-a\n+b\n"}, "path_outside_workspace")
    assert not [p for p in ws.rglob("*") if ".leasehold-" in p.name]
    w.close()


# --- search ----------------------------------------------------------------------------------------

def make_search_tree(ws: Path, outside: Path) -> None:
    (ws / "src").mkdir()
    (ws / "src" / "main.c").write_text("int main() {\n  return Needle;\n}\n// needle lower\n")
    (ws / "src" / "util.h").write_text("#define NEEDLE 1\n")
    (ws / "notes.md").write_text("a\nb\nthe Needle here\nc\nd\n")
    (ws / "build").mkdir()
    (ws / "build" / "out.c").write_text("Needle in build\n")
    (ws / "logs").mkdir()
    (ws / "logs" / "x.log").write_text("Needle in log\n")
    (ws / "logs" / "keep.log").write_text("Needle kept\n")
    (ws / ".gitignore").write_text("# comment\nbuild/\n*.log\n!keep.log\n/rootonly.txt\n")
    (ws / "rootonly.txt").write_text("Needle root\n")
    (ws / "src" / "rootonly.txt").write_text("Needle nested rootonly\n")
    (ws / "src" / ".gitignore").write_text("gen_*.c\n")
    (ws / "src" / "gen_x.c").write_text("Needle generated\n")
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("Needle in git\n")
    (ws / "bin.dat").write_bytes(b"Needle\0binary")
    os.symlink(str(outside), ws / "out_dir")
    os.symlink("notes.md", ws / "notes_link")
    os.mkfifo(ws / "fifo")


def found(result: dict) -> set[tuple[str, int]]:
    return {(m["path"], m["line"]) for m in result["matches"]}


def test_search_literal_ignore_and_skips(ws: Path, outside: Path) -> None:
    make_search_tree(ws, outside)
    (outside / "secret.txt").write_text("Needle outside\n")
    w = Worker(ws)
    result = w.ok("repo.search", {"pattern": "Needle"})
    assert found(result) == {("src/main.c", 2), ("notes.md", 3), ("logs/keep.log", 1), ("src/rootonly.txt", 1)}
    assert result["truncated"] is False and result["files_scanned"] >= 4
    match = next(m for m in result["matches"] if m["path"] == "notes.md")
    assert match["text"] == "the Needle here" and "before" not in match
    insensitive = w.ok("repo.search", {"pattern": "needle", "case_sensitive": False})
    assert ("src/util.h", 1) in found(insensitive) and ("src/main.c", 4) in found(insensitive)
    assert ("src/main.c", 2) in found(insensitive)
    regex = w.ok("repo.search", {"pattern": "^#define [A-Z]+ [0-9]$", "regex": True})
    assert found(regex) == {("src/util.h", 1)}
    ctx = w.ok("repo.search", {"pattern": "Needle here", "context_lines": 2})
    assert ctx["matches"] == [{"path": "notes.md", "line": 3, "text": "the Needle here", "before": ["a", "b"], "after": ["c", "d"]}]
    only_c = w.ok("repo.search", {"pattern": "Needle", "include": "*.c"})
    assert found(only_c) == {("src/main.c", 2)}
    no_src = w.ok("repo.search", {"pattern": "Needle", "exclude": "src"})
    assert found(no_src) == {("notes.md", 3), ("logs/keep.log", 1)}
    sub = w.ok("repo.search", {"pattern": "Needle", "path": "src"})
    assert found(sub) == {("src/main.c", 2), ("src/rootonly.txt", 1)}  # nested .gitignore still applies
    capped = w.ok("repo.search", {"pattern": "e", "max_matches": 2})
    assert len(capped["matches"]) == 2 and capped["truncated"] is True
    w.refused("repo.search", {"pattern": "("+"", "regex": True}, "invalid_arguments")
    w.refused("repo.search", {"pattern": ""}, "invalid_arguments")
    w.refused("repo.search", {"pattern": "x", "path": "out_dir"}, "path_outside_workspace")
    w.refused("repo.search", {"pattern": "x", "path": "../"}, "path_outside_workspace")
    w.refused("repo.search", {"pattern": "x", "max_matches": 10001}, "invalid_arguments")
    w.refused("repo.search", {"pattern": "x", "context_lines": 11}, "invalid_arguments")
    w.close()


def test_search_long_lines_are_capped(ws: Path) -> None:
    (ws / "long.txt").write_text("x" * 5000 + "Needle" + "y" * 5000 + "\n")
    w = Worker(ws)
    match = w.ok("repo.search", {"pattern": "Needle"})["matches"][0]
    assert len(match["text"].encode()) <= 500 and match["line"] == 1
    w.close()


# --- shell.run -------------------------------------------------------------------------------------

def test_shell_run(ws: Path, outside: Path) -> None:
    (ws / "sub").mkdir()
    os.symlink(str(outside), ws / "out_dir")
    w = Worker(ws, output_bytes=2000, wall_ms=3000, environment={"PATH": "/usr/bin:/bin", "BASE": "base"})
    r = w.ok("shell.run", {"command": "echo out; echo err >&2; exit 7"})
    assert (r["exit_code"], r["signal"], r["stdout"], r["stderr"], r["timed_out"]) == (7, None, "out\n", "err\n", False)
    r = w.ok("shell.run", {"argv": ["cat"], "stdin": "piped input"})
    assert r["stdout"] == "piped input" and r["exit_code"] == 0
    r = w.ok("shell.run", {"command": "kill -TERM $$"})
    assert r["exit_code"] is None and r["signal"] == "SIGTERM"
    r = w.ok("shell.run", {"command": "head -c 100000 /dev/zero | tr '\\0' a; head -c 50000 /dev/zero >&2"})
    assert r["stdout_truncated"] and r["stderr_truncated"] and len(r["stdout"]) == 1000 and r["exit_code"] == 0
    started = time.monotonic()
    # Which tier limit killed a command is a typed field of the response frame (3: wall_ms); a
    # shorter timeout the caller chose is an ordinary result, with none.
    is_error, limit, r = w.call_with_limit("shell.run", {"command": "sleep 30", "timeout_ms": 300})
    assert not is_error and limit is None, (limit, r)
    assert r["timed_out"] and r["signal"] == "SIGKILL" and time.monotonic() - started < 5
    is_error, limit, r = w.call_with_limit("shell.run", {"command": "sleep 30", "timeout_ms": 100000})  # capped
    assert not is_error and limit == 3, (limit, r)
    assert r["timed_out"] and r["duration_ms"] < 4500
    r = w.ok("shell.run", {"command": "echo $BASE $EXTRA", "env": {"EXTRA": "extra"}})
    assert r["stdout"] == "base extra\n"
    r = w.ok("shell.run", {"command": "pwd", "cwd": "sub"})
    assert r["stdout"].strip().endswith("/sub")
    r = w.ok("shell.run", {"command": "printf '\\377ok'"})
    assert r["stdout"] == "\ufffdok"
    w.refused("shell.run", {"command": "pwd", "cwd": ".."}, "path_outside_workspace")
    w.refused("shell.run", {"command": "pwd", "cwd": "out_dir"}, "path_outside_workspace")
    w.refused("shell.run", {"command": "pwd", "cwd": "/"}, "path_outside_workspace")
    w.refused("shell.run", {"command": "true", "env": {"BAD-NAME": "x"}}, "invalid_arguments")
    w.refused("shell.run", {"command": "true", "env": {"X": "v" * 4097}}, "invalid_arguments")
    w.refused("shell.run", {"command": "true", "env": {f"V{i}": "x" for i in range(65)}}, "invalid_arguments")
    w.refused("shell.run", {"command": "true", "argv": ["true"]}, "invalid_arguments")
    w.refused("shell.run", {}, "invalid_arguments")
    w.refused("shell.run", {"argv": []}, "invalid_arguments")
    w.refused("shell.run", {"argv": ["true", 3]}, "invalid_arguments")
    w.refused("shell.run", {"argv": ["definitely-not-a-program"]}, "command_not_found")
    w.close()


def test_shell_run_background_process_does_not_hold_the_call(ws: Path) -> None:
    w = Worker(ws, wall_ms=10000)
    started = time.monotonic()
    r = w.ok("shell.run", {"command": "sleep 60 & echo started"})
    assert r["stdout"] == "started\n" and time.monotonic() - started < 5
    # The background sleep was killed with the command's process group.
    out = subprocess.run(["pgrep", "-f", "^sleep 60$"], capture_output=True, text=True)
    assert out.stdout.strip() == "" or all(
        not Path(f"/proc/{pid}").exists() or os.getsid(int(pid)) != w.process.pid for pid in out.stdout.split())
    w.close()


# --- benchmark (reported, not asserted) ----------------------------------------------------------------


def build_bench_tree(tree: Path, target_bytes: int) -> None:
    """Copies of /usr/include and text under /usr/share until ~target_bytes, a rare token sprinkled in."""
    tree.mkdir(parents=True)
    sources = [Path("/usr/include"), Path("/usr/share/doc"), Path("/usr/share/perl"), Path("/usr/lib/python3")]
    total, copy = 0, 0
    while total < target_bytes:
        for source in sources:
            if not source.exists():
                continue
            for path in source.rglob("*"):
                if total >= target_bytes:
                    return
                try:
                    if not path.is_file() or path.is_symlink() or path.stat().st_size > 4 << 20:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                if b"\0" in data[:8192]:
                    continue
                dest = tree / f"copy{copy}" / path.relative_to(source.parent)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if hash(str(path)) % 97 == 0:
                    data += b"\n/* LEASEHOLD_RARE_TOKEN */\n"
                dest.write_bytes(data)
                total += len(data)
        copy += 1
