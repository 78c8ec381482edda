"""Black-box fuzzing with mcp-fuzzer (PyPI) over Streamable HTTP and stdio with a valid claim,
bounded in time: the fuzzer must finish every tool and protocol type, report no crash and no
transport anomaly, and the runner must still be up and well afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

FUZZER = Path(sys.executable).with_name("mcp-fuzzer")
BOUND_S = 240
SUMMARY = re.compile(r"\((\d+) server-rejected input, (\d+) accepted-malformed findings, (\d+) transport/protocol anomalies, (\d+) crashes\)")


def run_fuzzer(args: list[str], env: dict[str, str], out: Path) -> str:
    result = subprocess.run(
        [str(FUZZER), *args, "--mode", "all", "--runs", "4", "--runs-per-type", "2", "--timeout", "10",
         "--seed", "7", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=BOUND_S, env={**os.environ, **env},
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Status: completed" in log, log[-4000:]
    rows = SUMMARY.findall(log)
    assert len(rows) >= 9, f"expected a summary row per tool:\n{log[-4000:]}"
    for _, _, anomalies, crashes in rows:
        assert anomalies == "0" and crashes == "0", log[-4000:]
    return log


def test_fuzzing_over_streamable_http(server, tmp_path: Path) -> None:
    _, claim = server.create_session()
    run_fuzzer(
        ["--protocol", "streamablehttp", "--endpoint", server.mcp_url, "--auth-env"],
        {"MCP_API_KEY": claim}, tmp_path / "out",
    )
    assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200
    assert not any("Fatal error" in line for line in server.log)


def test_fuzzing_over_stdio(server, binary: Path, tmp_path: Path) -> None:
    _, claim = server.create_session()
    server.stop()  # the stdio runner opens the same state directory
    command = f"{binary} serve --stdio --state-dir {server.state_dir} --policies {server.policies_dir}"
    run_fuzzer(
        ["--protocol", "stdio", "--endpoint", command],
        {"LEASEHOLD_CLAIM": claim, "LEASEHOLD_OPERATOR_KEY": "lh_op_fuzz_" + "0" * 40}, tmp_path / "out",
    )
