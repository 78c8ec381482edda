"""Path attacks through the real binary: the attacker (globex, or acme against its other
workspace) hands every path-taking tool `..` in every position and encoding, absolute paths, `~`,
NUL bytes, very long paths, Unicode look-alikes, every payload of wfuzz's Traversal.txt, and
symlinks, hard links, FIFOs, sockets and device nodes planted in its own workspace.

Every case passes only if each call is refused with a confinement code (or stays inside the
attacker's workspace), no victim canary appears in any answer or in the attacker's audit view,
every call left its audit record, and no byte of a victim workspace changed.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from attack_support import CANARY_PREFIX, CONFINED_CODES, Agent, World, make_symlink_via_shell

TRAVERSAL_LIST = Path("/usr/share/wfuzz/wordlist/Injections/Traversal.txt")
PWNED = "pwned by the attacker\n"

# (id, path template, kind). {acme}/{acme2}/{state} are absolute host paths of the victims,
# {own_dir} an existing directory of the attacker's own workspace. kind:
#   outside - escapes through existing components: read/list/stat/shell cwd must say path_outside_workspace
#   nul / long - refused as invalid_arguments / path_too_long before the kernel sees them
#   any - confinement is enough (not_found and friends, or a success inside the attacker's workspace)
PAYLOADS = [
    # `..` in every position
    ("dotdot", "..", "outside"),
    ("dotdot_slash", "../", "outside"),
    ("dotdot_dotdot", "../..", "outside"),
    ("sibling_root", "../../acme/w1", "outside"),
    ("sibling_file", "../../acme/w1/notes.txt", "outside"),
    ("dot_then_dotdot", "./../../acme/w1/notes.txt", "outside"),
    ("inner_dot", "../../acme/w1/./notes.txt", "outside"),
    ("own_dir_up_twice", "{own_dir}/../../../acme/w1/notes.txt", "outside"),
    ("own_dir_double_slash", "{own_dir}/..//../../acme/w1", "outside"),
    ("own_dir_up_up", "{own_dir}/../..", "outside"),
    ("missing_dir_up", "a/../../../acme/w1/notes.txt", "any"),
    ("deep_etc_passwd", "../../../../../../../../../../etc/passwd", "outside"),
    ("forty_up", "../" * 40 + "etc/passwd", "outside"),
    ("same_tenant_other_ws", "../g1/notes.txt", "outside"),
    ("acme_w2", "../../acme/w2/notes.txt", "outside"),
    ("dotdot_trailing", "notes.txt/..", "any"),
    # encodings and near-misses of `..`
    ("four_dots_double_slash", "....//../acme/w1/notes.txt", "any"),
    ("four_dots", "..../", "any"),
    ("three_dots", ".../../acme/w1", "any"),
    ("backslash", "..\\../acme/w1\\notes.txt", "any"),
    ("backslash_deep", "..\\..\\..\\..\\etc\\passwd", "any"),
    ("mixed_slashes", "..\\/..\\/../acme/w1", "any"),
    ("pct_dotdot", "%2e%2e/../acme/w1/notes.txt", "any"),
    ("pct_all", "%2e%2e%2f../acme/w1%2fnotes.txt", "any"),
    ("pct_slash", "..%2f../acme/w1", "any"),
    ("pct_double", "%252e%252e/../acme/w1", "any"),
    ("overlong_utf8_text", "..%c0%af../acme/w1", "any"),
    ("half_pct", ".%2e/../acme/w1/notes.txt", "any"),
    ("semicolon", "..;/../acme/w1/notes.txt", "any"),
    ("dotdot_space", ".. /../acme/w1/notes.txt", "any"),
    ("dotdot_tab", "..\t/../acme/w1", "any"),
    ("newline", "..\n/../acme/w1", "any"),
    # absolute paths
    ("root", "/", "outside"),
    ("etc_passwd", "/etc/passwd", "outside"),
    ("double_slash_abs", "//etc//passwd", "outside"),
    ("victim_root", "{acme}", "outside"),
    ("victim_notes", "{acme}/notes.txt", "outside"),
    ("victim_via_dotdot", "{acme}/../../acme/w1/notes.txt", "outside"),
    ("victim_w2_notes", "{acme2}/notes.txt", "outside"),
    ("state_dir", "{state}", "outside"),
    ("state_audit", "{state}/audit.sqlite", "outside"),
    ("proc_self_root", "/proc/self/root{acme}/notes.txt", "outside"),
    ("proc_self_cwd", "/proc/self/cwd/notes.txt", "outside"),
    ("proc_1_root", "/proc/1/root/etc/passwd", "outside"),
    ("proc_1_cwd", "/proc/1/cwd", "outside"),
    ("proc_self_fd", "/proc/self/fd/3", "outside"),
    ("proc_self_environ", "/proc/self/environ", "outside"),
    ("dev_zero", "/dev/zero", "outside"),
    ("dev_tty", "/dev/tty", "outside"),
    ("tmp", "/tmp", "outside"),
    # ~
    ("tilde", "~", "any"),
    ("tilde_notes", "~/notes.txt", "any"),
    ("tilde_root", "~root/.bashrc", "any"),
    ("tilde_user", "~acme/notes.txt", "any"),
    # NUL bytes
    ("nul_suffix", "notes.txt\x00", "nul"),
    ("nul_prefix", "\x00../../etc/passwd", "nul"),
    ("nul_middle", "../../acme/w1/notes.txt\x00.md", "nul"),
    ("nul_truncate_escape", "README.md\x00/../../../acme/w1", "nul"),
    # very long
    ("long_dirs", "a/" * 2100, "long"),
    ("long_dotdot", "../" * 1400 + "etc/passwd", "long"),
    ("long_name", "x" * 5000, "long"),
    ("name_max_plus", "y" * 300, "any"),
    # Unicode look-alikes
    ("two_dot_leader", "\u2025/../acme/w1/notes.txt", "any"),
    ("one_dot_leaders", "\u2024\u2024/../acme/w1/notes.txt", "any"),
    ("fullwidth_dots", "\uff0e\uff0e/../acme/w1/notes.txt", "any"),
    ("fullwidth_slash", "..\uff0f../acme/w1\uff0fnotes.txt", "any"),
    ("small_full_stops", "\ufe52\ufe52/../acme/w1", "any"),
    ("division_slash", "..\u2215../acme/w1\u2215notes.txt", "any"),
    ("zero_width_space", ".\u200b./../acme/w1/notes.txt", "any"),
    ("combining_overlay", "..\u0338/../acme/w1", "any"),
    ("rtl_override", "\u202e../../acme/w1", "any"),
]


def render(template: str, world: World, own_dir: str) -> str:
    return (template.replace("{acme2}", str(world.acme2.root)).replace("{acme}", str(world.acme.root))
            .replace("{state}", str(world.state_dir)).replace("{own_dir}", own_dir))


def path_calls(p: str) -> list[tuple[str, dict]]:
    """Every path-taking tool, aimed at `p`."""
    return [
        ("repo.read_file", {"path": p}),
        ("repo.list_dir", {"path": p}),
        ("repo.stat", {"path": p}),
        ("repo.search", {"pattern": CANARY_PREFIX, "path": p, "case_sensitive": False}),
        ("repo.write_file", {"path": p, "content": PWNED}),
        ("repo.apply_patch", {"patch": f"--- /dev/null\n+++ b/{p}\n@@ -0,0 +1 @@\n+{PWNED}"}),
        ("shell.run", {"command": "cat notes.txt; ls -la", "cwd": p}),
    ]


STRICT = {
    "outside": {
        "repo.read_file": {"path_outside_workspace"},
        "repo.list_dir": {"path_outside_workspace"},
        "repo.stat": {"path_outside_workspace"},
        "shell.run": {"path_outside_workspace"},
        # "..", "../" and "/" name no file to create: refused before the kernel is asked.
        "repo.write_file": {"path_outside_workspace", "invalid_arguments"},
    },
    "nul": {t: {"invalid_arguments"} for t in
            ("repo.read_file", "repo.list_dir", "repo.stat", "repo.search", "repo.write_file", "shell.run")},
    "long": {t: {"path_too_long"} for t in ("repo.read_file", "repo.list_dir", "repo.stat", "repo.write_file", "shell.run")},
}


def attack_paths(world: World, agent: Agent, paths: list[str], kind: str = "any") -> list[tuple[str, str | None]]:
    """Runs every path tool against every path; checks codes, audit records and the victims."""
    answers = []
    outcomes = []
    for p in paths:
        for tool, args in path_calls(p):
            answer = agent.call(tool, args)
            code = answer.code
            expected = STRICT.get(kind, {}).get(tool)
            if expected is not None:
                assert code in expected, f"{tool} {p!r}: expected {expected}, got {answer.message}"
            elif code is not None:
                assert code in CONFINED_CODES, f"{tool} {p!r}: unexpected code {answer.message}"
            answers.append((answer, code))
            outcomes.append((tool, code))
    records = agent.audit()
    for answer, code in answers:
        agent.audited(answer, code, records)
    world.assert_victims_unchanged()
    return outcomes


@pytest.mark.parametrize("template, kind", [(t, k) for _, t, k in PAYLOADS], ids=[i for i, _, _ in PAYLOADS])
def test_path_payload_is_confined(world: World, template: str, kind: str) -> None:
    agent, tree = world.attacker()
    try:
        attack_paths(world, agent, [render(template, world, f"dir_{tree.dir_name}")], kind)
    finally:
        agent.close()


@pytest.mark.parametrize("template", ["../../acme/w2/notes.txt", "{acme2}/notes.txt", "../../acme/w2",
                                      "/proc/self/root{acme2}"], ids=["rel_file", "abs_file", "rel_root", "proc_root"])
def test_acme_cannot_reach_its_other_workspace(world: World, template: str) -> None:
    """Same tenant, other workspace: the workspace, not the tenant, is the boundary."""
    agent, tree = world.attacker("acme")
    try:
        attack_paths(world, agent, [render(template, world, f"dir_{tree.dir_name}")], "outside")
    finally:
        agent.close()


def traversal_payloads() -> list[str]:
    if not TRAVERSAL_LIST.is_file():
        return ["__missing__"]
    return [line.rstrip("\n") for line in TRAVERSAL_LIST.read_text(errors="replace").splitlines() if line.strip()]


@pytest.mark.parametrize("payload", traversal_payloads())
def test_wfuzz_traversal_payload_is_confined(world: World, payload: str) -> None:
    if payload == "__missing__":
        pytest.fail(f"{TRAVERSAL_LIST} is missing: install the Debian package wfuzz", pytrace=False)
    agent, _ = world.attacker()
    try:
        outcomes = attack_paths(world, agent, [payload])
        # A payload that climbs through existing directories to /etc is refused as outside, never not_found.
        if payload.startswith("../") and payload.rstrip("%0").endswith(("etc/passwd", "etc/hosts", "etc/shadow")):
            assert ("repo.read_file", "path_outside_workspace") in outcomes, outcomes
    finally:
        agent.close()


# --------------------------------------------------------------------------------------------
# Symlinks planted by the attacker with shell.run
# --------------------------------------------------------------------------------------------

# (id, [(link name, target template)], [paths to attack]). Targets point at the victims.
SYMLINKS = [
    ("absolute_to_victim_root", [("link", "{acme}")], ["link", "link/notes.txt"]),
    ("absolute_to_victim_file", [("link", "{acme}/notes.txt")], ["link"]),
    ("relative_escape", [("link", "../../acme/w1")], ["link", "link/notes.txt"]),
    ("relative_deep", [("link", "../../../../../../../..{acme}")], ["link/notes.txt"]),
    ("dangling_into_victim", [("link", "{acme}/created_by_attacker.txt")], ["link"]),
    ("dangling_nowhere", [("link", "/nonexistent/nothing")], ["link", "link/x"]),
    ("in_an_ancestor", [("a/up", "{acme_parent}")], ["a/up/../acme/w1/notes.txt", "a/up/../acme/w1"]),
    ("chain", [("second", "first"), ("first", "{acme}")], ["second/notes.txt", "second"]),
    ("loop", [("loop", "loop")], ["loop", "loop/x"]),
    ("proc_self_root", [("link", "/proc/self/root")], ["link{acme}/notes.txt", "link/etc/passwd"]),
    ("proc_1_cwd", [("link", "/proc/1/cwd")], ["link/notes.txt", "link"]),
    ("proc_self_cwd", [("link", "/proc/self/cwd")], ["link/notes.txt"]),
    ("proc_self_fd", [(f"fd{n}", f"/proc/self/fd/{n}") for n in range(6)], [f"fd{n}" for n in range(6)]),
    ("etc_passwd", [("link", "/etc/passwd")], ["link"]),
    ("state_dir", [("link", "{state}")], ["link/audit.sqlite", "link"]),
    ("same_tenant_other_ws", [("link", "../g1")], ["link/notes.txt"]),
    ("victim_w2", [("link", "{acme2}")], ["link/notes.txt"]),
]


def render_target(template: str, world: World) -> str:
    return render(template, world, "").replace("{acme_parent}", str(world.acme.root.parent))


@pytest.mark.parametrize("links, paths", [(l, p) for _, l, p in SYMLINKS], ids=[i for i, _, _ in SYMLINKS])
def test_symlink_planted_by_the_attacker_is_not_followed_out(world: World, links, paths) -> None:
    agent, tree = world.attacker()
    try:
        for name, target in links:
            make_symlink_via_shell(agent, render_target(target, world), name)
        outcomes = attack_paths(world, agent, paths)
        # Reading through an escaping link is refused as outside the workspace by the kernel.
        reads = [code for tool, code in outcomes if tool == "repo.read_file"]
        assert all(code is not None for code in reads), outcomes
        # The shell cannot read through them either (Landlock confines it to the workspace).
        for p in paths:
            # Bounded: /proc/self/fd/0 of `cat` is its own stdin, which may block.
            agent.call("shell.run", {"command": f"cat '{p}' 2>&1; ls '{p}/' 2>&1; true", "stdin": "",
                                     "timeout_ms": 1500})
        # A workspace-wide search walks past the links, never into them.
        found = agent.call("repo.search", {"pattern": CANARY_PREFIX, "case_sensitive": False}).ok()
        assert {m["path"] for m in found["matches"]} <= {"notes.txt", f"secret_{tree.file_name}.txt",
                                                          f"dir_{tree.dir_name}/inner.txt"}, found
        assert not (world.acme.root / "created_by_attacker.txt").exists()
    finally:
        agent.close()


def test_symlink_swapped_in_during_reads_never_serves_victim_bytes(world: World) -> None:
    """TOCTOU: a racing shell.run swaps a directory for a symlink to the victim root and back, as
    fast as it can, while repo.read_file, list_dir and stat read through it in a loop."""
    tree = world.attacker_workspace()
    racer = Agent(world, "globex", tree.workspace, actor="racer")
    reader = Agent(world, "globex", tree.workspace, actor="reader")
    (tree.root / "d").mkdir()
    (tree.root / "d" / "notes.txt").write_text("the attacker's own notes\n")
    seconds = 4
    script = (f"end=$(( $(date +%s) + {seconds} )); n=0; while [ $(date +%s) -lt $end ]; do "
              f"mv d d.real && ln -s '{world.acme.root}' d && rm d && mv d.real d; n=$((n+1)); done; echo swaps=$n")
    swapped: dict = {}

    def race() -> None:
        swapped.update(racer.shell(script, timeout_ms=(seconds + 5) * 1000))

    thread = threading.Thread(target=race)
    thread.start()
    codes: dict[str | None, int] = {}
    try:
        while thread.is_alive():
            for tool, args in (("repo.read_file", {"path": "d/notes.txt"}), ("repo.list_dir", {"path": "d"}),
                               ("repo.stat", {"path": "d/notes.txt"})):
                answer = reader.call(tool, args)  # leak-checked against every victim canary
                codes[answer.code] = codes.get(answer.code, 0) + 1
                if answer.code is None and tool == "repo.read_file":
                    assert answer.ok()["content"] == "the attacker's own notes\n", answer.message
                elif answer.code is not None:
                    assert answer.code in CONFINED_CODES, answer.message
    finally:
        thread.join(timeout=30)
        racer.close()
    assert swapped.get("exit_code") == 0 and "swaps=" in swapped.get("stdout", ""), swapped
    assert int(swapped["stdout"].split("swaps=")[1]) > 10, swapped
    assert sum(codes.values()) > 30, codes
    reader.audit()  # leak-checked
    reader.close()
    world.assert_victims_unchanged()


# --------------------------------------------------------------------------------------------
# Hard links, FIFOs, sockets, device nodes
# --------------------------------------------------------------------------------------------


def test_hard_link_to_an_outside_file_is_refused(world: World) -> None:
    """The test (the host) gives acme's file a second name inside globex's workspace."""
    agent, tree = world.attacker()
    try:
        os.link(world.hardlink_victim, tree.root / "hl.txt")
        (tree.root / "sub").mkdir()
        os.link(world.hardlink_victim, tree.root / "sub" / "hl2.txt")
        for p in ("hl.txt", "sub/hl2.txt"):
            assert agent.call("repo.read_file", {"path": p}).code == "hard_link"
            assert agent.call("repo.read_file", {"path": p, "encoding": "base64"}).code == "hard_link"
            agent.call("repo.stat", {"path": p})  # metadata only; leak-checked
            patch = f"--- a/{p}\n+++ b/{p}\n@@ -1 +1 @@\n-x\n+{PWNED}"
            assert agent.call("repo.apply_patch", {"patch": patch}).code in CONFINED_CODES
        found = agent.call("repo.search", {"pattern": CANARY_PREFIX, "case_sensitive": False}).ok()
        assert all("hl" not in m["path"] for m in found["matches"]), found
        # Replacing the attacker's name is confined to it: the victim's bytes stay as they were.
        agent.call("repo.write_file", {"path": "hl.txt", "content": PWNED})
        world.assert_victims_unchanged()
        records = agent.audit()
        assert any(r.get("outcome") == "error" for r in records), records
    finally:
        agent.close()


def test_a_tenant_cannot_make_a_hard_link_to_anything_outside(world: World) -> None:
    """A hard link to an outside file can only be planted from the host (the operator, who is
    trusted: docs/threat-model.md, known limits): inside a worker every outside file is either
    invisible or on another mount, so link(2) fails with EXDEV and nothing of another tenant's
    appears. The repo tools refuse multiply-linked files anyway (test_hard_link_to_an_outside_file_is_refused)."""
    agent, _ = world.attacker()
    try:
        ran = agent.shell(
            "for f in /etc/passwd /usr/bin/sh /proc/self/status /.leasehold/worker; do "
            "ln \"$f\" link.$$ 2>&1 && echo LINKED; done; "
            f"ln {world.hardlink_victim} v.$$ 2>&1; ls -la; true"
        )
        assert "LINKED" not in ran["stdout"], ran
        assert "Invalid cross-device link" in ran["stdout"] or "Operation not permitted" in ran["stdout"], ran
    finally:
        agent.close()


def _assert_returns_quickly(agent: Agent, tool: str, args: dict, limit_s: float = 8.0):
    started = time.monotonic()
    answer = agent.call(tool, args)
    assert time.monotonic() - started < limit_s, f"{tool} {args} took too long"
    return answer


def test_fifo_never_hangs_a_tool(world: World) -> None:
    agent, tree = world.attacker()
    try:
        assert agent.shell("mkfifo pipe && mkdir d && mkfifo d/pipe2 && echo ok")["stdout"] == "ok\n"
        assert _assert_returns_quickly(agent, "repo.read_file", {"path": "pipe"}).code == "not_regular_file"
        assert _assert_returns_quickly(agent, "repo.read_file", {"path": "d/pipe2", "encoding": "base64"}).code == "not_regular_file"
        assert _assert_returns_quickly(agent, "repo.stat", {"path": "pipe"}).ok()["type"] == "fifo"
        listing = _assert_returns_quickly(agent, "repo.list_dir", {"path": "."}).ok()
        assert {"path": "pipe", "type": "fifo"}.items() <= next(e for e in listing["entries"] if e["path"] == "pipe").items()
        _assert_returns_quickly(agent, "repo.search", {"pattern": "x"}).ok()
        _assert_returns_quickly(agent, "repo.search", {"pattern": "x", "path": "pipe"})
        patch = "--- a/pipe\n+++ b/pipe\n@@ -1 +1 @@\n-x\n+y\n"
        assert _assert_returns_quickly(agent, "repo.apply_patch", {"patch": patch}).code in CONFINED_CODES
        # Bounded by timeout_ms even when the shell itself blocks on the FIFO.
        ran = _assert_returns_quickly(agent, "shell.run", {"command": "cat pipe", "timeout_ms": 1000}).ok()
        assert ran["timed_out"] is True, ran
    finally:
        agent.close()


def test_unix_socket_is_not_a_file(world: World) -> None:
    agent, tree = world.attacker()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(tree.root / "sock"))
        server.listen(1)
        assert _assert_returns_quickly(agent, "repo.read_file", {"path": "sock"}).code in {"not_regular_file", "path_outside_workspace"}
        assert _assert_returns_quickly(agent, "repo.stat", {"path": "sock"}).ok()["type"] == "socket"
        _assert_returns_quickly(agent, "repo.search", {"pattern": "x"}).ok()
        # A socket made by the attacker inside its workspace.
        made = agent.shell("python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.bind('own.sock'); print('ok')\" 2>&1 || true")
        if made["stdout"].strip() == "ok":
            assert agent.call("repo.read_file", {"path": "own.sock"}).code == "not_regular_file"
    finally:
        server.close()
        agent.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="planting device nodes on the host needs root")
@pytest.mark.parametrize("major, minor", [(1, 3), (1, 5), (1, 8), (5, 0)], ids=["null", "zero", "random", "tty"])
def test_device_node_is_never_opened(world: World, major: int, minor: int) -> None:
    agent, tree = world.attacker()
    try:
        os.mknod(tree.root / "dev", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        assert _assert_returns_quickly(agent, "repo.read_file", {"path": "dev"}).code == "not_regular_file"
        assert _assert_returns_quickly(agent, "repo.stat", {"path": "dev"}).ok()["type"] == "char_device"
        _assert_returns_quickly(agent, "repo.search", {"pattern": "x"}).ok()
        patch = "--- a/dev\n+++ b/dev\n@@ -1 +1 @@\n-x\n+y\n"
        assert _assert_returns_quickly(agent, "repo.apply_patch", {"patch": patch}).code in CONFINED_CODES
    finally:
        agent.close()


def test_the_attacker_cannot_make_device_nodes(world: World) -> None:
    agent, _ = world.attacker()
    try:
        ran = agent.shell("mknod null c 1 3 2>&1; echo rc=$?; ls -la null 2>&1; true")
        assert "rc=0" not in ran["stdout"], ran
    finally:
        agent.close()


def test_worker_refusals_are_audited_with_their_code(world: World) -> None:
    """Invariant 9: a refusal is audited with its reason. A path refused inside the worker is
    answered `path_outside_workspace`; its call.outcome record must name that code."""
    agent, _ = world.attacker()
    try:
        answer = agent.call("repo.read_file", {"path": "../../acme/w1/notes.txt"})
        assert answer.code == "path_outside_workspace"
        record = agent.audited(answer)
        assert record["event"] == "call.outcome" and record["outcome"] == "error", record
        assert record.get("code") == "path_outside_workspace", f"the audit record omits the refusal code: {record}"
    finally:
        agent.close()


def test_the_attackers_whole_audit_view_holds_no_victim_canary(world: World) -> None:
    """Last in the module: everything globex did above, as globex's admin key sees it."""
    text = world.attacker_audit_text("globex")
    world.assert_no_leak(text, "globex's audit view")
    assert "path_outside_workspace" in text or "call.outcome" in text
    world.assert_victims_unchanged()
