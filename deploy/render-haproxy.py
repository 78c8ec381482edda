#!/usr/bin/env python3
"""Writes deploy/haproxy.cfg for a given set of Leasehold nodes (standard library only).

    deploy/render-haproxy.py --bind 0.0.0.0:8000 n1=10.0.0.1:8080 n2=10.0.0.2:8080 > haproxy.cfg

Each NODE is the node's `node_id` (the suffix of the MCP connection ids it issues) and the address
its `leasehold serve --http` listens on. The cluster tests and the benchmark run it too.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "haproxy.cfg"
NODE = re.compile(r"^([A-Za-z0-9_-]{1,64})=([^\s=]+:\d{1,5})$")


def render(bind: str, nodes: list[tuple[str, str]], template: str | None = None) -> str:
    lines = []
    for line in (template or TEMPLATE.read_text()).splitlines():
        stripped = line.strip()
        if stripped.startswith(("server ", "use-server ")):
            continue
        if stripped.startswith("bind "):
            line = f"    bind {bind}"
        lines.append(line)
        if stripped == "# routes":
            lines += [f"    use-server {name} if {{ req.hdr(mcp-session-id) -m end .{name} }}" for name, _ in nodes]
        elif stripped == "# servers":
            lines += [f"    server {name} {address} check inter 1s fall 2 rise 1" for name, address in nodes]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT HAProxy listens on")
    parser.add_argument("nodes", nargs="+", metavar="NODE_ID=HOST:PORT")
    args = parser.parse_args()
    nodes = []
    for text in args.nodes:
        match = NODE.match(text)
        if not match:
            parser.error(f"{text!r} is not NODE_ID=HOST:PORT (node ids: 1-64 of [A-Za-z0-9_-])")
        nodes.append((match.group(1), match.group(2)))
    if len({name for name, _ in nodes}) != len(nodes):
        parser.error("node ids must differ")
    sys.stdout.write(render(args.bind, nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
