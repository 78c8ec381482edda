"""The one harness that starts a real `leasehold serve` for the tests and the benchmarks.

Shared by the interop tests (Tests/Interop/interop_support.py re-exports it; attack_support.py and
cluster_support.py build on it) and the benchmarks (Benchmarks/e2e_bench.py, soak.py,
cluster_bench.py, upstream_bench.py). It lives outside Tests/Interop because the benchmarks run in
.venv-bench, which has httpx but neither the MCP client nor PyYAML: this module needs only the
standard library and httpx, and never imports pytest (callers turn `StartError` into their own
failure).

What it does: `leasehold serve --http 127.0.0.1:0` with a state directory, the repo's (or given)
policies and config, the operator key in the environment; waits for the "listening on" line on
stderr (never a fixed sleep), keeps the log, and stops with SIGTERM. The default workspace base
is `<state dir>-workspaces`; `canary_workspaces()` gives the two tenants (acme, globex) each a
registered workspace holding a canary file, as the black-box attack tests need.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICIES_DIR = REPO_ROOT / "policies"
OPERATOR_KEY = "lh_op_interop_" + "0123456789abcdef" * 3
TENANTS = ("acme", "globex")
LISTENING = re.compile(r"leasehold: listening on (http://127\.0\.0\.1:(\d+)) ")
READY_TIMEOUT_S = 30.0
SHUTDOWN_GRACE_S = 10.0


class StartError(Exception):
    """`leasehold serve` exited or stayed silent before printing its listening line."""


class ShutdownError(AssertionError):
    """The server had to be killed after SIGTERM: graceful shutdown hung."""


class AdminError(AssertionError):
    """An admin API call answered another status than the one expected."""


def default_binary() -> Path:
    """`$LEASEHOLD_BIN`, else `<repo>/.build/debug/leasehold` (not checked: callers report a missing one)."""
    configured = os.environ.get("LEASEHOLD_BIN")
    return Path(configured) if configured else REPO_ROOT / ".build" / "debug" / "leasehold"


def workspace_base_of(state_dir: Path) -> Path:
    """Where a runner with this state dir keeps workspace roots by default (no workspace_bases)."""
    state_dir = Path(state_dir)
    return Path(os.path.realpath(state_dir.parent)) / f"{state_dir.name}-workspaces"


def canary_text(tenant: str) -> str:
    """The canary in `tenant`'s workspace file `secret.txt` (see `LeaseholdServer.canary_workspaces`)."""
    return f"CANARY-{tenant.upper()}-7f3a"


def shared_node_secrets(binary: Path | str, shared_dir: Path | str) -> tuple[Path, str]:
    """What the nodes of one cluster share: a claim key set (`leasehold keys generate`, made once in
    `shared_dir`) and a fresh audit signing key; `(keys file, audit key text)`."""
    keys = Path(shared_dir) / "keys.json"
    if not keys.exists():
        subprocess.run([str(binary), "keys", "generate", "--out", str(keys)], check=True, capture_output=True,
                       timeout=60)
    return keys, base64.b64encode(secrets.token_bytes(32)).decode() + "\n"


def write_audit_key(state_dir: Path | str, audit_key: str) -> None:
    """Places a cluster's shared audit signing key in a node's state directory (owner-only), unless
    the node already has one."""
    key_file = Path(state_dir) / "audit-signing.key"
    if not key_file.exists():
        key_file.write_text(audit_key)
        key_file.chmod(0o600)


class LeaseholdServer:
    """`leasehold serve --http 127.0.0.1:0`, ready once it printed its "listening" line."""

    def __init__(
        self, binary: Path | str, state_dir: Path | str, policies_dir: Path | str = POLICIES_DIR,
        config: Path | str | None = None, preexec: Any = None, extra_env: dict[str, str] | None = None,
        extra_args: Iterable[str] = (), launcher: Iterable[str] = (), operator_key: str = OPERATOR_KEY,
        ready_timeout: float = READY_TIMEOUT_S, max_log_lines: int | None = None,
    ):
        self.preexec = preexec
        # A command that execs `leasehold serve ...` (its arguments appended), e.g. `sh -c 'exec "$@"' sh`.
        self.launcher = list(launcher)
        self.extra_args = list(extra_args)
        self.extra_env = dict(extra_env or {})
        self.binary = binary
        self.state_dir = Path(state_dir)
        self.policies_dir = policies_dir
        self.config = config
        self.operator_key = operator_key
        self.ready_timeout = ready_timeout
        # A long benchmark keeps only the first lines (the start-up and any early failure).
        self.max_log_lines = max_log_lines
        self.base_url: str | None = None
        self.log: list[str] = []
        self._ready = threading.Event()
        self._logged = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    # The process ------------------------------------------------------------------------------

    def start(self) -> LeaseholdServer:
        """Starts the process and waits for its listening line; `StartError` (process stopped) when
        it does not come within `ready_timeout`."""
        args = [
            str(self.binary), "serve", "--http", "127.0.0.1:0",
            "--state-dir", str(self.state_dir), "--policies", str(self.policies_dir),
        ]
        if self.config is not None:
            args += ["--config", str(self.config)]
        args = self.launcher + args + self.extra_args
        env = {k: v for k, v in os.environ.items() if k != "LEASEHOLD_CLAIM"}
        env["LEASEHOLD_OPERATOR_KEY"] = self.operator_key
        env.update(self.extra_env)
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
            preexec_fn=self.preexec,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        # Wait on the "listening" line (or EOF), never on a fixed sleep.
        self._ready.wait(self.ready_timeout)
        if self.base_url is None:
            self.kill()
            raise StartError(
                f"leasehold serve did not print its listening line within {self.ready_timeout}s "
                f"(exit code {self._process.returncode}); stderr:\n" + "\n".join(self.log)
            )
        return self

    def _drain(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for raw in self._process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._logged:
                if self.max_log_lines is None or len(self.log) < self.max_log_lines:
                    self.log.append(line)
                self._logged.notify_all()
            if self.base_url is None and (m := LISTENING.search(line)):
                self.base_url = m.group(1)
                self._ready.set()
        self._ready.set()  # EOF: the process ended

    def wait_for_log(self, *parts: str, after: int = 0, timeout: float = 15.0) -> str | None:
        """The first line from index `after` on that contains every one of `parts`, waiting (on
        the reader's notification, not a poll) until it is written or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._logged:
            while True:
                for line in self.log[after:]:
                    if all(part in line for part in parts):
                        return line
                after = len(self.log)
                left = deadline - time.monotonic()
                if left <= 0 or not self._logged.wait(left):
                    return None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server was not started"
        return self._process.pid

    @property
    def port(self) -> int:
        assert self.base_url is not None, "the server is not listening"
        return int(self.base_url.rsplit(":", 1)[1])

    def stop(self) -> None:
        """SIGTERM and wait; a server that does not drain within the grace period is killed and
        `ShutdownError` raised."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        exit_code = self.terminate(SHUTDOWN_GRACE_S)
        if exit_code is None:
            self.kill()
            raise ShutdownError(f"leasehold serve did not exit within {SHUTDOWN_GRACE_S}s of SIGTERM; killed")

    def send_signal(self, signum: int) -> None:
        assert self._process is not None and self._process.poll() is None, "the server is not running"
        self._process.send_signal(signum)

    def terminate(self, timeout: float) -> int | None:
        """Sends SIGTERM; the exit code, or None when the process is still running after `timeout`."""
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL (when still running) and reap."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    # URLs --------------------------------------------------------------------------------------

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    def server_url(self, server_id: str) -> str:
        return f"{self.base_url}/mcp/servers/{server_id}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v1"

    # Admin API -------------------------------------------------------------------------------

    def _headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_key if key is None else key}"}

    def admin(self, method: str, path: str, body: Any = None, expect: int | None = None, key: str | None = None,
              timeout: float = 20) -> httpx.Response:
        """Synchronous admin call (fixtures, setup), with the operator key unless `key` is given."""
        response = httpx.request(method, self.api_url + path, json=body, headers=self._headers(key), timeout=timeout)
        if expect is not None and response.status_code != expect:
            raise AdminError(f"{method} {path} -> {response.status_code} {response.text[:2000]}")
        return response

    async def aadmin(self, method: str, path: str, body: Any = None, expect: int | None = None,
                     key: str | None = None) -> httpx.Response:
        """Asynchronous admin call (inside async tests, so the MCP client keeps running)."""
        async with httpx.AsyncClient(timeout=20) as client:
            response = await client.request(method, self.api_url + path, json=body, headers=self._headers(key))
        if expect is not None and response.status_code != expect:
            raise AdminError(f"{method} {path} -> {response.status_code} {response.text[:2000]}")
        return response

    @property
    def workspace_base(self) -> Path:
        """The runner's default workspace base: `<state dir>-workspaces`, beside the state dir."""
        return workspace_base_of(self.state_dir)

    def workspace_dir(self, tenant: str = "acme", workspace: str = "w1") -> Path:
        """A new directory where an operator may register `tenant`'s workspace: `<base>/<tenant>/<ws>`."""
        path = self.workspace_base / tenant / workspace
        path.mkdir(parents=True)
        return Path(os.path.realpath(path))

    def register_workspace(self, root: Path | str, tenant: str = "acme", workspace: str = "w1") -> None:
        self.admin(
            "POST", "/workspaces", {"tenant_id": tenant, "workspace_id": workspace, "root": os.path.realpath(root)},
            expect=201,
        )

    def canary_workspaces(self, workspace: str = "main", tenants: Iterable[str] = TENANTS) -> dict[str, Path]:
        """Each tenant gets workspace `workspace` in the default base, holding `secret.txt` with
        `canary_text(tenant)`, registered; the roots by tenant."""
        roots = {}
        for tenant in tenants:
            root = self.workspace_dir(tenant, workspace)
            (root / "secret.txt").write_text(canary_text(tenant))
            self.register_workspace(root, tenant=tenant, workspace=workspace)
            roots[tenant] = root
        return roots

    def create_session(self, **fields: Any) -> tuple[dict[str, Any], str]:
        """POST /sessions with `fields` over acme/alice/w1 (the interop tests' default session);
        `(session, claim)`."""
        body = {"tenant_id": "acme", "actor_id": "alice", "workspace_id": "w1", **fields}
        data = self.admin("POST", "/sessions", body, expect=201).json()
        return data["session"], data["claim"]

    def mint_claim(self, session_id: str, **body: Any) -> str:
        return self.admin("POST", f"/sessions/{session_id}/claims", body or None, expect=201).json()["claim"]

    async def amint_claim(self, session_id: str, **body: Any) -> str:
        return (await self.aadmin("POST", f"/sessions/{session_id}/claims", body or None, expect=201)).json()["claim"]
