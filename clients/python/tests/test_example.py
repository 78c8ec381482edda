"""examples/orchestrator.py works as shipped: against a runner set up like `make run` (--demo, the
knowledge base as upstream `vivi`, the generated operator key file) with no arguments but the URL,
and against this suite's runner with its own patterns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from interop_support import POLICIES_DIR, LeaseholdServer, leasehold_binary

from conftest import REPO_ROOT, Runner
from leasehold_client import Leasehold

EXAMPLE = REPO_ROOT / "examples" / "orchestrator.py"


def _run_example(*args: str, cwd: Path, env_key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LEASEHOLD_API_KEY", "LEASEHOLD_OPERATOR_KEY", "LEASEHOLD_URL")}
    if env_key is not None:
        env["LEASEHOLD_API_KEY"] = env_key
    # The example imports the package as an orchestrator would; here from this checkout.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "clients" / "python" / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=50
    )


def _session_id(output: str) -> str:
    first = output.splitlines()[0]
    assert first.startswith("session "), output
    return first.split()[1]


def test_example_against_a_make_run_runner(tmp_path: Path) -> None:
    python = REPO_ROOT / ".venv-examples" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run scripts/bootstrap.sh (make test does)", pytrace=False)
    # The Makefile's demo config, with this checkout's paths.
    config = tmp_path / "demo.yaml"
    config.write_text(
        "servers:\n  - id: vivi\n    transport: stdio\n"
        f"    command: [{python}, {REPO_ROOT / 'examples' / 'kb_server.py'}]\n"
        f"    mounts: [{REPO_ROOT / 'examples'}, {REPO_ROOT / '.venv-examples'}]\n"
        "    isolation: tenant\n    workspace: true\n    tier: upstream\n"
    )
    # No LEASEHOLD_OPERATOR_KEY: the runner writes .leasehold/operator.key, as under `make run`.
    server = LeaseholdServer(
        leasehold_binary(), tmp_path / ".leasehold", POLICIES_DIR, config, extra_env={"LEASEHOLD_OPERATOR_KEY": ""},
        extra_args=["--demo"],
    ).start()
    try:
        assert (tmp_path / ".leasehold" / "operator.key").is_file()
        done = _run_example("--url", server.base_url or "", cwd=tmp_path)
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nrunner:\n" + "\n".join(server.log[-40:])
        out = done.stdout
        assert "agent got notifications/tools/list_changed" in out, out
        assert "agent calls vivi.kb_finance: " in out and "Q3 revenue grew 12%" in out, out
        assert "agent now sees 7 tools" in out, out  # system.* and the five vivi.kb_* topics
        key = (tmp_path / ".leasehold" / "operator.key").read_text().strip()
        with Leasehold(server.base_url, key) as lh:
            assert lh.sessions.get(_session_id(out)).revoked
    finally:
        server.stop()


def test_example_with_its_own_patterns(runner: Runner) -> None:
    done = _run_example(
        "--url", runner.base_url + "/mcp", "--workspace", "w1", "--actor", "example",
        "--allow", "kb.*", "--allow", "repo.read_file", "--deny", "kb.publish", "--narrow-deny", "kb.support_*",
        "--call", "repo.read_file", "--arguments", '{"path": "README.md"}',
        cwd=Path(runner.server.state_dir), env_key=runner.tenant_keys["acme"],
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "client fixture" in done.stdout and "list_changed" in done.stdout
    with runner.client() as lh:
        session = lh.sessions.get(_session_id(done.stdout))
    assert session.revoked and session.denied_tool_names == ["kb.publish", "kb.support_*"]


def test_example_refusal_is_reported(runner: Runner, tmp_path: Path) -> None:
    done = _run_example("--url", runner.base_url, "--workspace", "nope", cwd=tmp_path, env_key=runner.operator_key)
    assert done.returncode == 1 and "Leasehold refused: 400" in done.stderr, done.stderr
