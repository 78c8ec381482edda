"""Soak: a mixed workload against one `leasehold serve` for SOAK_SECONDS, with the runner's
resources sampled over time; fails on growth that does not level off (issue 21).

Workload (threads, raw JSON-RPC over Streamable HTTP and the admin API, two tenants acme and
globex): repo.read_file / list_dir / search (read tier, warm workers), repo.write_file and
repo.apply_patch (write tier), shell.run (exec tier, a fresh worker per call), repo.stat mapped to
an approval tier (asked, granted through the admin API, called again), session PATCHes (deny
lists set and cleared), lease renewals (new claim, new connection), revocations, and sessions
coming and going (each driver ends its session every SESSION_CALLS calls and starts another).

Sampled every SAMPLE_SECONDS from /proc and `/metrics`: the runner's RSS, open descriptors and
threads ("tasks"), its live workers (`leasehold_workers_live`), and per minute: calls, errors by
code, latency p50/p95/p99.

Level-off rule (what "fails on growth" means): over the second half of the run, the least-squares
slope of RSS and of descriptors, projected over that half, must stay under max(32 MiB, 15 % of the
half's median RSS) and max(64, 25 % of the median descriptors). Warm-up growth in the first half
(caches, pools, SQLite pages) is allowed; growth that keeps going is a leak. After the load stops
and every session is revoked, the live workers must fall to the spares' count and the
descriptors back within 64 of the first sample.

Usage: SOAK_SECONDS=600 .venv/bin/python Benchmarks/soak.py [--json FILE] [--reliability FILE]
  SOAK_SECONDS   default 600, at most 3600
  SOAK_DRIVERS   concurrent drivers (default 8)
  LEASEHOLD_BIN  the binary (default .build/debug/leasehold)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Interop"))
from interop_support import (  # noqa: E402
    INITIALIZE_BODY,
    copy_policies,
    jsonrpc_messages,
    raw_headers,
)
from leasehold_harness import OPERATOR_KEY, LeaseholdServer, default_binary  # noqa: E402  (the one harness; interop_support put it on the path)

VERSION = INITIALIZE_BODY["params"]["protocolVersion"]
MAX_SECONDS = 3600
SAMPLE_SECONDS = 5.0
SESSION_CALLS = 60
ADMIN = {"Authorization": f"Bearer {OPERATOR_KEY}"}
METRIC = re.compile(r"^leasehold_workers_live\{[^}]*\}\s+([0-9.e+]+)$", re.M)


class Stats:
    """Calls, errors and latencies, per minute of the run."""

    def __init__(self, start: float):
        self.start = start
        self.lock = threading.Lock()
        self.minutes: dict[int, dict[str, Any]] = {}
        self.errors: dict[str, int] = {}
        self.calls = 0

    def record(self, what: str, seconds: float, code: str | None) -> None:
        minute = int((time.monotonic() - self.start) // 60)
        with self.lock:
            bucket = self.minutes.setdefault(minute, {"latencies": [], "errors": {}, "calls": 0})
            bucket["calls"] += 1
            bucket["latencies"].append(seconds)
            self.calls += 1
            if code is not None:
                key = f"{what}:{code}"
                bucket["errors"][key] = bucket["errors"].get(key, 0) + 1
                self.errors[key] = self.errors.get(key, 0) + 1


class Driver(threading.Thread):
    """One tenant's agent: sessions one after another, each used for SESSION_CALLS mixed calls."""

    def __init__(self, index: int, base: str, tenant: str, workspace: str, stats: Stats, stop: threading.Event):
        super().__init__(daemon=True)
        self.index, self.base, self.tenant, self.workspace = index, base, tenant, workspace
        self.stats, self.stop = stats, stop
        self.http = httpx.Client(timeout=httpx.Timeout(60))
        self.random = random.Random(index)
        self.next_id = 0
        self.failure: str | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        started = time.monotonic()
        response = self.http.request(method, self.base + "/api/v1" + path, json=body, headers=ADMIN)
        code = None if response.status_code < 400 else f"http_{response.status_code}"
        self.stats.record(f"admin.{method}", time.monotonic() - started, code)
        return response

    def connect(self, claim: str) -> None:
        self.claim = claim
        response = self.http.post(self.base + "/mcp", json=INITIALIZE_BODY, headers=raw_headers(claim))
        response.raise_for_status()
        self.sid = response.headers["mcp-session-id"]
        self.http.post(self.base + "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                       headers=raw_headers(claim, self.sid, VERSION))

    def call(self, name: str, arguments: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}
        started = time.monotonic()
        response = self.http.post(self.base + "/mcp", json=body, headers=raw_headers(self.claim, self.sid, VERSION))
        elapsed = time.monotonic() - started
        if response.status_code != 200:
            self.stats.record(name, elapsed, f"http_{response.status_code}")
            return f"http_{response.status_code}", {}
        message = jsonrpc_messages(response)[0]
        code = None
        result: dict[str, Any] = {}
        if "error" in message:
            code = str(((message["error"].get("data") or {}).get("detail") or message["error"]["message"]).split(":")[0])
        else:
            result = message["result"]
            if result.get("isError"):
                result = (result.get("structuredContent") or {}).get("error") or {}
                code = str(result.get("code", "tool_error"))
            else:
                result = result.get("structuredContent") or {}
        self.stats.record(name, elapsed, code)
        return code, result

    # -- the workload --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.session_lifetime()
        except Exception as error:  # noqa: BLE001 - reported as the soak's failure
            if not self.stop.is_set():
                self.failure = f"driver {self.index}: {error!r}"
        finally:
            self.http.close()

    def session_lifetime(self) -> None:
        created = self.admin("POST", "/sessions", {"tenant_id": self.tenant, "actor_id": f"agent{self.index}",
                                                    "workspace_id": self.workspace})
        if created.status_code != 201:
            return
        session = created.json()["session"]["id"]
        self.connect(created.json()["claim"])
        mine = f"d{self.index}"
        for step in range(SESSION_CALLS):
            if self.stop.is_set():
                break
            roll = self.random.random()
            if roll < 0.30:
                self.call("repo.read_file", {"path": "README.md", "length": 1 + self.random.randrange(200)})
            elif roll < 0.40:
                self.call("repo.list_dir", {"path": ".", "limit": 1 + self.random.randrange(50)})
            elif roll < 0.45:
                self.call("repo.search", {"pattern": f"line {self.random.randrange(100)}"})
            elif roll < 0.60:
                self.call("repo.write_file", {"path": f"{mine}/f{step % 5}.txt", "content": f"{step}\n" * 20})
            elif roll < 0.65:
                self.call("repo.write_file", {"path": f"{mine}/p.txt", "content": "a\nb\nc\n"})
                self.call("repo.apply_patch", {"patch": f"--- a/{mine}/p.txt\n+++ b/{mine}/p.txt\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"})
            elif roll < 0.80:
                self.call("shell.run", {"command": f"echo {step} | wc -c"})
            elif roll < 0.85:
                code, asked = self.call("repo.stat", {"path": "README.md"})
                # The same call a second time in a session: its grant is used up (approval_invalid),
                # with a fresh request for a human, granted like the first.
                if code in ("approval_required", "approval_invalid") and "approval_id" in asked:
                    self.admin("POST", f"/approvals/{asked['approval_id']}/grant", {"uses": 1})
                    self.call("repo.stat", {"path": "README.md"})
            elif roll < 0.90:
                self.admin("PATCH", f"/sessions/{session}", {"denied_tool_names": ["repo.search"]})
                self.call("repo.search", {"pattern": "x"})  # refused: tool_not_in_scope
                self.admin("PATCH", f"/sessions/{session}", {"denied_tool_names": None})
            elif roll < 0.93:
                renewed = self.admin("POST", f"/sessions/{session}/lease")
                if renewed.status_code == 201:
                    self.connect(renewed.json()["claim"])
            else:
                self.call("repo.read_file", {"path": "README.md"})  # the cache's answer
        self.admin("DELETE", f"/sessions/{session}")


# -- sampling ------------------------------------------------------------------------------------


def proc_sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_mib": rss_kib / 1024, "fds": fds, "threads": threads}


def live_workers(base: str) -> float:
    text = httpx.get(base + "/metrics", headers=ADMIN, timeout=30).text
    return sum(float(v) for v in METRIC.findall(text))


def slope(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mean_x) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / den


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


# -- the run ---------------------------------------------------------------------------------------


def prepare(base: Path) -> tuple[Path, Path]:
    """Policies with repo.stat behind an approval; a config; workspaces of acme and globex."""
    policies = copy_policies(base / "policies")
    tools = policies / "tools.yaml"
    tools.write_text(tools.read_text().replace('{pattern: "repo.stat", tier: read}', '{pattern: "repo.stat", tier: external}'))
    config = base / "leasehold.yaml"
    config.write_text("policy_reload_interval_seconds: 0\n")
    return policies, config


def soak(seconds: int, drivers: int, binary: Path) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="lh-soak-"))
    try:
        policies, config = prepare(base)
        server = LeaseholdServer(binary, base / "state", policies, config).start()
        try:
            return drive(server, seconds, drivers, binary)
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(f"{base}-workspaces", ignore_errors=True)


def drive(server: LeaseholdServer, seconds: int, drivers: int, binary: Path) -> dict[str, Any]:
    for tenant, workspace in (("acme", "w1"), ("globex", "g1")):
        root = server.workspace_dir(tenant, workspace)
        (root / "README.md").write_text("soak fixture\n" + "".join(f"line {i}\n" for i in range(100)))
        for index in range(drivers):
            (root / f"d{index}").mkdir()
        server.register_workspace(root, tenant=tenant, workspace=workspace)
    assert server.base_url is not None and server._process is not None
    pid = server._process.pid
    start = time.monotonic()
    stats = Stats(start)
    stop = threading.Event()
    threads = [Driver(i, server.base_url, ("acme", "globex")[i % 2], ("w1", "g1")[i % 2], stats, stop)
               for i in range(drivers)]
    samples: list[dict[str, float]] = []

    def sample() -> None:
        entry = {"t": round(time.monotonic() - start, 1), **proc_sample(pid), "workers": live_workers(server.base_url),
                 "calls": stats.calls}
        samples.append(entry)

    sample()
    load_before = os.getloadavg()
    for thread in threads:
        thread.start()
    deadline = start + seconds
    while time.monotonic() < deadline and not any(t.failure for t in threads):
        stop.wait(min(SAMPLE_SECONDS, max(0.0, deadline - time.monotonic())))
        sample()
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    # Drained: every driver revoked its session on the way out (or its lease ends); the pool keeps
    # only spares. Wait (bounded) for the revoked sessions' workers to go.
    drained_deadline = time.monotonic() + 60
    while True:
        after = {**proc_sample(pid), "workers": live_workers(server.base_url)}
        if after["workers"] <= 16 or time.monotonic() > drained_deadline:
            break
        stop.wait(1.0)
    result = report(samples, after, stats, seconds, drivers, binary, [t.failure for t in threads if t.failure])
    result["load_average"] = {"start": load_before, "end": os.getloadavg()}
    return result


def report(samples: list[dict[str, float]], after: dict[str, float], stats: Stats, seconds: int, drivers: int,
           binary: Path, failures: list[str]) -> dict[str, Any]:
    half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2]
    xs = [s["t"] for s in half]
    span = (xs[-1] - xs[0]) if len(xs) > 1 else 0.0
    rss_growth = slope(xs, [s["rss_mib"] for s in half]) * span
    fd_growth = slope(xs, [s["fds"] for s in half]) * span
    rss_limit = max(32.0, 0.15 * statistics.median(s["rss_mib"] for s in half))
    fd_limit = max(64.0, 0.25 * statistics.median(s["fds"] for s in half))
    minutes = []
    for minute in sorted(stats.minutes):
        bucket = stats.minutes[minute]
        lat = bucket["latencies"]
        in_minute = [s for s in samples if minute * 60 <= s["t"] < (minute + 1) * 60] or samples[-1:]
        minutes.append({
            "minute": minute + 1, "calls": bucket["calls"], "errors": sum(bucket["errors"].values()),
            "p50_ms": round(percentile(lat, 0.50) * 1000, 1), "p95_ms": round(percentile(lat, 0.95) * 1000, 1),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 1),
            "rss_mib": round(max(s["rss_mib"] for s in in_minute), 1), "fds": max(s["fds"] for s in in_minute),
            "threads": max(s["threads"] for s in in_minute), "workers": max(s["workers"] for s in in_minute),
        })
    problems = list(failures)
    if rss_growth > rss_limit:
        problems.append(f"RSS kept growing: +{rss_growth:.1f} MiB over the second half (limit {rss_limit:.1f})")
    if fd_growth > fd_limit:
        problems.append(f"descriptors kept growing: +{fd_growth:.0f} over the second half (limit {fd_limit:.0f})")
    if after["fds"] > samples[0]["fds"] + 64:
        problems.append(f"descriptors after the load {after['fds']} vs {samples[0]['fds']} before")
    if after["workers"] > 16:
        problems.append(f"{after['workers']:.0f} workers live after every session was revoked (spares: at most 16)")
    unexpected = {k: v for k, v in stats.errors.items() if not expected_error(k)}
    if unexpected:
        problems.append(f"unexpected errors: {unexpected}")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "binary": str(binary), "seconds": seconds, "drivers": drivers,
        "calls": stats.calls, "errors_by_code": dict(sorted(stats.errors.items())),
        "second_half": {"rss_growth_mib": round(rss_growth, 1), "rss_limit_mib": round(rss_limit, 1),
                        "fd_growth": round(fd_growth, 1), "fd_limit": round(fd_limit, 1)},
        "first": samples[0], "last": samples[-1], "after": after, "minutes": minutes, "samples": samples,
        "ok": not problems, "problems": problems,
    }


def expected_error(key: str) -> bool:
    """Errors the workload provokes on purpose: the approval asked before a grant, the search a
    PATCH just denied, and typed refusals of a busy runner (tenant limits)."""
    _, code = key.split(":", 1)
    return (key in ("repo.stat:approval_required", "repo.stat:approval_invalid", "repo.search:tool_not_in_scope")
            or code in ("tenant_at_limit", "session_busy", "too_many_calls"))


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), {memory // 1024} GiB RAM"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"## Soak ({result['date']})", "",
        f"Machine: {result['machine']}; binary `{Path(result['binary']).relative_to(REPO) if str(result['binary']).startswith(str(REPO)) else result['binary']}`; "
        f"{result['seconds']} s, {result['drivers']} drivers, {result['calls']} calls and admin requests; "
        f"load average {result['load_average']['start'][0]:.1f} at the start, {result['load_average']['end'][0]:.1f} at the end "
        "(other work on the machine shares its cores). "
        f"Result: **{'ok' if result['ok'] else 'FAILED'}**" + ("" if result["ok"] else f" ({'; '.join(result['problems'])})"), "",
        f"Second half (the level-off rule): RSS {result['second_half']['rss_growth_mib']:+} MiB "
        f"(limit {result['second_half']['rss_limit_mib']}), descriptors {result['second_half']['fd_growth']:+} "
        f"(limit {result['second_half']['fd_limit']}). Before the load: RSS {result['first']['rss_mib']:.1f} MiB, "
        f"{result['first']['fds']} descriptors, {result['first']['threads']} threads, {result['first']['workers']:.0f} workers; "
        f"after it (sessions revoked): RSS {result['after']['rss_mib']:.1f} MiB, {result['after']['fds']} descriptors, "
        f"{result['after']['threads']} threads, {result['after']['workers']:.0f} workers.", "",
        "| minute | calls | errors | p50 ms | p95 ms | p99 ms | max RSS MiB | max fds | max threads | max workers |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in result["minutes"]:
        lines.append(f"| {m['minute']} | {m['calls']} | {m['errors']} | {m['p50_ms']} | {m['p95_ms']} | {m['p99_ms']} | "
                     f"{m['rss_mib']} | {m['fds']} | {m['threads']} | {m['workers']:.0f} |")
    lines += ["", "Errors by code (the workload asks for approvals and calls a tool it just denied on purpose):", ""]
    lines += [f"- `{key}`: {count}" for key, count in result["errors_by_code"].items()] or ["- none"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the whole result (with every sample) here")
    parser.add_argument("--reliability", type=Path, help="replace the soak section of this markdown file")
    args = parser.parse_args()
    seconds = int(os.environ.get("SOAK_SECONDS", "600"))
    if not 10 <= seconds <= MAX_SECONDS:
        print(f"soak: SOAK_SECONDS must be 10-{MAX_SECONDS}, not {seconds}", file=sys.stderr)
        return 2
    drivers = int(os.environ.get("SOAK_DRIVERS", "8"))
    binary = default_binary()
    print(f"soak: {seconds} s, {drivers} drivers, {binary}", flush=True)
    result = soak(seconds, drivers, binary)
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.reliability:
        marker = "<!-- soak -->"
        current = args.reliability.read_text() if args.reliability.exists() else marker + "\n"
        head, _, _ = current.partition(marker)
        args.reliability.write_text(head + marker + "\n" + text)
    if not result["ok"]:
        print("soak: FAILED: " + "; ".join(result["problems"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
