"""shell.run attacks through the real binary: the attacker (globex) runs commands in its own
exec-tier worker and tries to reach acme's workspaces, the runner's state directory and
environment, other processes, the network, the kernel's namespace/mount/ptrace/TTY interfaces,
setuid binaries, and the runner's resources (fork and memory bombs, huge output, sleeping past
the timeout, background processes that try to outlive the call).

Every answer is leak-checked against every victim canary (Agent.call); each case then asserts
what the command must have seen, that the call left its audit record, and the victims' bytes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from typing import Any, Callable

import httpx
import pytest

from attack_support import CANARY_PREFIX, ENV_SECRET_NAME, Agent, World
from interop_support import OPERATOR_KEY

Check = Callable[[dict[str, Any]], None]


def failed(result: dict[str, Any]) -> None:
    assert result["exit_code"] != 0 or result["timed_out"] or result["signal"], result


def printed_denied(result: dict[str, Any]) -> None:
    assert "rc=0" not in result["stdout"], result


def nothing(_: dict[str, Any]) -> None:
    """The leak check of every answer is the assertion."""


def printed(expected: str) -> Check:
    def check(result: dict[str, Any]) -> None:
        assert result["stdout"].strip() == expected, result
    return check


def only_own_processes(result: dict[str, Any]) -> None:
    lines = [l.split(None, 2) for l in result["stdout"].strip().splitlines()[1:]]
    comms = {parts[2] if len(parts) > 2 else parts[-1] for parts in lines}
    assert len(lines) <= 6, result["stdout"]
    assert not any("leasehold" in c or "python" in c or "pytest" in c for c in comms), result["stdout"]


# (id, command template, check). {acme}, {acme2}, {state}, {roots}, {port}, {runner_pid}.
SHELL_CASES: list[tuple[str, str, Check]] = [
    ("cat_victim_file", "cat {acme}/notes.txt", failed),
    ("ls_victim_root", "ls -la {acme}", failed),
    ("cat_victim_secret_glob", "cat {acme}/secret_* {acme}/dir_*/inner.txt", failed),
    ("cat_other_acme_ws", "cat {acme2}/notes.txt", failed),
    ("cat_same_tenant_other_ws", "cat {roots}/../globex/g1/notes.txt", failed),
    ("find_roots", "find {roots} -maxdepth 3 2>&1; true", nothing),
    ("ls_roots_parent", "ls -la {roots}/.. {roots}/../.. 2>&1; true", nothing),
    ("grep_everywhere", "timeout 8 grep -rsI " + CANARY_PREFIX + " /tmp /var /root /home /srv /opt /mnt /run /etc /proc/self 2>/dev/null; true", nothing),
    ("state_dir_ls", "ls -la {state}", failed),
    ("state_dir_audit", "head -c 100000 {state}/audit.sqlite", failed),
    ("state_dir_canary", "cat {state}/acme_*.txt", failed),
    ("state_dir_keys", "cat {state}/keys.json", failed),
    ("via_proc_root", "cat /proc/1/root{acme}/notes.txt", failed),
    ("via_proc_self_root", "cat /proc/self/root{acme}/notes.txt", failed),
    ("via_proc_cwd", "ls /proc/1/cwd/ /proc/self/cwd/../ 2>&1; cat /proc/1/cwd/../*/notes.txt 2>&1; true", nothing),
    ("via_dotdot_cwd", "cd .. 2>&1 && ls -la && cat */notes.txt 2>&1; true", nothing),
    ("symlink_then_cat", "ln -s {acme} v && cat v/notes.txt", failed),
    ("hardlink_then_cat", "ln {acme}/notes.txt h 2>&1; cat h 2>&1; true", nothing),
    ("cp_out", "cp {acme}/notes.txt mine.txt", failed),
    ("env", "env", nothing),
    ("env_named", "printenv " + ENV_SECRET_NAME + " LEASEHOLD_OPERATOR_KEY; true", nothing),
    ("proc_environ_all", "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; true", nothing),
    ("proc_runner_environ", "cat /proc/{runner_pid}/environ 2>&1; true", nothing),
    ("proc_runner_cmdline", "cat /proc/{runner_pid}/cmdline 2>&1; ls /proc/{runner_pid}/ 2>&1; true", nothing),
    ("ps_sees_only_own", "ps -e -o pid,ppid,comm", only_own_processes),
    ("proc_listing", "ls /proc | grep -E '^[0-9]+$' | wc -l | { read n; [ \"$n\" -le 6 ] && echo few; }", printed("few")),
    ("proc_1_mem", "cat /proc/1/mem | head -c 16; echo rc=$?", nothing),
    ("proc_1_mem_dd", "dd if=/proc/1/mem bs=1 count=16 skip=4194304 2>&1; true", nothing),
    ("ptrace_attach_1", "python3 -c \"import ctypes; l=ctypes.CDLL(None, use_errno=True); r=l.ptrace(16,1,0,0); print('rc=%d' % r)\"", printed_denied),
    ("strace_attach_1", "timeout 3 strace -p 1 2>&1; echo rc=$?", printed_denied),
    ("strace_child", "timeout 5 strace -f true 2>&1 | tail -3; true", nothing),
    ("kill_runner", "kill -9 {runner_pid} 2>&1; echo rc=$?", printed_denied),
    ("kill_all_visible", "kill -9 -1 2>&1; echo done", nothing),
    ("tcp_runner_port", "python3 -c \"import socket; s=socket.create_connection(('127.0.0.1',{port}),2); s.sendall(b'GET /healthz HTTP/1.0\\r\\n\\r\\n'); print(s.recv(100)); print('rc=0')\" 2>&1; true", printed_denied),
    ("tcp_external", "python3 -c \"import socket; socket.create_connection(('1.1.1.1',80),2); print('rc=0')\" 2>&1; true", printed_denied),
    ("udp_dns", "python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b'x',('8.8.8.8',53)); print(s.recv(10)); print('rc=0')\" 2>&1; true", printed_denied),
    ("dev_tcp", "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && echo rc=0' 2>&1; true", printed_denied),
    ("curl_runner", "curl -sS -m 3 http://127.0.0.1:{port}/api/v1/audit -H 'Authorization: Bearer " + OPERATOR_KEY + "' 2>&1; echo rc=$?", printed_denied),
    ("dns_getent", "getent hosts example.com; echo rc=$?", printed_denied),
    ("ipv6_loopback", "python3 -c \"import socket; socket.create_connection(('::1',{port}),2); print('rc=0')\" 2>&1; true", printed_denied),
    ("netlink", "ip link 2>&1; true", nothing),
    ("abstract_socket_any", "python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('\\0anything'); print('rc=0')\" 2>&1; true", printed_denied),
    ("tiocsti", "python3 -c \"import fcntl, termios, sys; fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('rc=0')\" 2>&1; true", printed_denied),
    ("tiocsti_dev_tty", "python3 -c \"import fcntl, termios, os; fd=os.open('/dev/tty', os.O_RDWR); fcntl.ioctl(fd, termios.TIOCSTI, b'x'); print('rc=0')\" 2>&1; true", printed_denied),
    ("unshare_user", "unshare -r id 2>&1; echo rc=$?", printed_denied),
    ("unshare_mount", "unshare -m true 2>&1; echo rc=$?", printed_denied),
    ("mount_tmpfs", "mkdir -p m && mount -t tmpfs none m 2>&1; echo rc=$?", printed_denied),
    ("mount_bind_victim", "mkdir -p m && mount --bind {acme} m 2>&1; echo rc=$?; cat m/notes.txt 2>&1; true", printed_denied),
    ("mount_proc", "mkdir -p p && mount -t proc proc p 2>&1; echo rc=$?", printed_denied),
    ("chroot", "chroot / true 2>&1; echo rc=$?", printed_denied),
    ("setuid_su", "echo root | timeout 3 su -c 'id -u' root 2>&1; echo rc=$?", printed_denied),
    ("setuid_mount_bit", "ls -la $(command -v mount) $(command -v su); id -u; grep NoNewPrivs /proc/self/status", lambda r: None if "NoNewPrivs:\t1" in r["stdout"] else pytest.fail(r["stdout"])),
    ("no_capabilities", "grep -E '^Cap(Eff|Prm|Amb):' /proc/self/status", lambda r: None if all(l.endswith("0000000000000000") for l in r["stdout"].splitlines()) else pytest.fail(r["stdout"])),
    ("mknod", "mknod n c 1 3 2>&1; echo rc=$?", printed_denied),
    ("write_system_dir", "echo x > /etc/leasehold-pwned 2>&1; echo x > /usr/bin/pwned 2>&1; echo rc=$?; ls /etc/leasehold-pwned 2>&1; true", nothing),
    ("write_victim", "echo pwned > {acme}/notes.txt 2>&1; echo pwned > {acme}/new.txt; echo rc=$?", printed_denied),
    ("bpf_perf", "python3 -c \"import ctypes; l=ctypes.CDLL(None, use_errno=True); print('rc=%d' % l.syscall(321, 0, 0, 0))\" 2>&1; true", printed_denied),
    ("keyctl", "python3 -c \"import ctypes; l=ctypes.CDLL(None, use_errno=True); print('rc=%d' % l.syscall(250, 0, 0, 0, 0, 0))\" 2>&1; true", nothing),
]


def render(template: str, world: World) -> str:
    return (template.replace("{acme2}", str(world.acme2.root)).replace("{acme}", str(world.acme.root))
            .replace("{state}", str(world.state_dir)).replace("{roots}", str(world.acme.root.parent))
            .replace("{port}", world.server.base_url.rsplit(":", 1)[1])
            .replace("{runner_pid}", str(world.server._process.pid)))


@pytest.fixture
def attacker(world: World):
    agent, tree = world.attacker()
    yield agent
    agent.close()


@pytest.mark.parametrize("template, check", [(t, c) for _, t, c in SHELL_CASES], ids=[i for i, _, _ in SHELL_CASES])
def test_shell_attack_is_confined(world: World, attacker: Agent, template: str, check: Check) -> None:
    answer = attacker.call("shell.run", {"command": render(template, world), "timeout_ms": 10000})
    result = answer.ok()
    assert OPERATOR_KEY not in answer.text and world.env_canary not in answer.text
    check(result)
    record = attacker.audited(answer)
    assert record["event"] == "call.outcome" and record["isolation"] == "call" and record["worker_id"], record
    world.assert_victims_unchanged()
    # The runner survived whatever the command did, and the next call works.
    assert httpx.get(world.server.base_url + "/healthz", timeout=10).status_code == 200
    assert attacker.shell("echo alive")["stdout"] == "alive\n"


def test_abstract_socket_of_the_host_is_unreachable(world: World, attacker: Agent) -> None:
    """An abstract unix socket listening on the host (the runner's network namespace) answers
    with a canary to whoever connects; the worker's own network namespace cannot reach it."""
    name = b"\0leasehold-interop-" + os.urandom(6).hex().encode()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(name)
    listener.listen(4)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.sendall(world.env_canary.encode())
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        path = name[1:].decode()
        ran = attacker.shell(
            f"python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('\\0{path}'); print(s.recv(100)); print('rc=0')\" 2>&1; true")
        printed_denied(ran)
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_pathname_socket_outside_the_workspace_is_unreachable(world: World, attacker: Agent, tmp_path) -> None:
    path = tmp_path / "host.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    try:
        ran = attacker.shell(
            f"python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('{path}'); print('rc=0')\" 2>&1; true")
        printed_denied(ran)
    finally:
        listener.close()


def test_fork_bomb_is_bounded_and_the_next_call_works(attacker: Agent) -> None:
    started = time.monotonic()
    answer = attacker.call("shell.run", {"command": "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", "timeout_ms": 8000})
    assert time.monotonic() - started < 30
    assert answer.code in (None, "limit_exceeded"), answer.message
    assert attacker.shell("echo next")["stdout"] == "next\n"
    attacker.audited(answer)


def test_memory_bomb_is_bounded(attacker: Agent) -> None:
    answer = attacker.call("shell.run", {"command": "python3 -c \"a = bytearray(4 * 1024**3); print(len(a))\"", "timeout_ms": 20000})
    if answer.code is None:
        result = answer.ok()
        assert result["exit_code"] != 0 or result["signal"], result
        assert "4294967296" not in result["stdout"]
    else:
        assert answer.code == "limit_exceeded", answer.message
    assert attacker.shell("echo next")["stdout"] == "next\n"


def test_huge_output_is_truncated(attacker: Agent) -> None:
    answer = attacker.call("shell.run", {"command": "head -c 6000000 /dev/zero | tr '\\0' x; head -c 3000000 /dev/zero | tr '\\0' y >&2"})
    if answer.code == "limit_exceeded":
        return
    result = answer.ok()
    assert result["stdout_truncated"] is True and result["stderr_truncated"] is True, {k: v for k, v in result.items() if "out" not in k or "trunc" in k}
    assert len(result["stdout"]) + len(result["stderr"]) <= 1048576 + 4096
    assert set(result["stdout"]) <= {"x"}


def test_sleep_past_the_timeout(attacker: Agent) -> None:
    started = time.monotonic()
    result = attacker.shell("sleep 30; echo woke", timeout_ms=1000)
    assert time.monotonic() - started < 10
    assert result["timed_out"] is True and "woke" not in result["stdout"], result
    assert result["exit_code"] is None and result["signal"], result


@pytest.mark.parametrize("spawn", [
    "sleep {marker} &",
    "nohup sleep {marker} >/dev/null 2>&1 &",
    "setsid sleep {marker} >/dev/null 2>&1 < /dev/null &",
    "sh -c 'sh -c \"sleep {marker} &\" &' ;",
    "python3 -c \"import os, time; os.fork() or (os.setsid(), os.fork() or time.sleep({marker}))\" &",
], ids=["background", "nohup", "setsid", "double_fork", "daemonize"])
def test_background_process_does_not_survive_the_call(attacker: Agent, spawn: str) -> None:
    marker = f"{1000 + int.from_bytes(os.urandom(2), 'big') / 1000:.3f}"
    result = attacker.shell(spawn.format(marker=marker) + " echo started", timeout_ms=5000)
    assert "started" in result["stdout"], result
    # The per-call worker's whole process tree is gone: nothing on the host, nothing in the next call.
    deadline = time.monotonic() + 5
    while True:
        found = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split()
        found += subprocess.run(["pgrep", "-f", f"time.sleep\\({marker}"], capture_output=True, text=True).stdout.split()
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # the kill is asynchronous to the answer; bounded by the deadline
    assert not found, f"processes survived the call: {found}"
    seen = attacker.shell("ps -e -o pid,comm,args")
    assert marker not in seen["stdout"], seen


def test_shell_cannot_signal_another_tenants_worker(world: World, attacker: Agent) -> None:
    """acme's long-running call keeps its worker busy; globex tries every pid it can name."""
    victim = Agent(world, "acme", "w1", actor="alice")
    out: dict = {}

    def long_call() -> None:
        out.update(victim.call("shell.run", {"command": "sleep 3; echo victim-ok", "timeout_ms": 10000}, leak_check=False).ok())

    thread = threading.Thread(target=long_call)
    thread.start()
    time.sleep(0.5)  # acme's call has started (its worker is spawned); only time can show that here
    attacker.shell("for p in $(seq 2 400); do kill -9 $p 2>/dev/null; done; kill -9 -1 2>/dev/null; echo done")
    thread.join(20)
    victim.close()
    assert out.get("stdout") == "victim-ok\n", out


# inotify_init1 / inotify_add_watch / fanotify_init through libc, as inotifywait would call them.
WATCH_PROBE = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def report(name, rc):
    print("%s rc=%d errno=%s" % (name, rc, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()) if rc < 0 else 0))
fd = libc.inotify_init1(os.O_CLOEXEC)
report("inotify_init1", fd)
# On a watch fd that exists if the first call got through; -1 otherwise (EBADF when let through).
report("inotify_add_watch", libc.inotify_add_watch(fd, b"/usr/bin", 0x20))  # IN_OPEN
report("fanotify_init", libc.fanotify_init(0x1 | 0x200, os.O_RDONLY))  # FAN_CLOEXEC | FAN_REPORT_FID
"""


def test_shell_cannot_watch_the_shared_system_dirs(attacker: Agent) -> None:
    """/usr/bin and the worker binary are read-only binds shared by every tenant's workers: an
    inotify or fanotify watch there (inotifywait -m /usr/bin) would show one tenant which programs
    another runs. The exec tier's seccomp filter refuses the watch calls with EPERM."""
    result = attacker.shell("python3 -c '" + WATCH_PROBE.replace("'", "'\"'\"'") + "' 2>&1")
    lines = dict(line.split(" ", 1) for line in result["stdout"].strip().splitlines())
    assert set(lines) == {"inotify_init1", "inotify_add_watch", "fanotify_init"}, result
    for name in ("inotify_init1", "fanotify_init"):
        assert lines[name] in ("rc=-1 errno=EPERM", "rc=-1 errno=ENOSYS"), result
    # No inotify instance, so no watch (the filter refuses the call before the kernel sees the fd).
    assert lines["inotify_add_watch"] in ("rc=-1 errno=EPERM", "rc=-1 errno=ENOSYS"), result
