#!/usr/bin/env python3
"""fetch_server.py - a small MCP server over stdio that tries to reach the network (example upstream
for Leasehold's network grants, `network:` of a server in leasehold.yaml).

Run:  python3 examples/fetch_server.py        (speaks MCP over stdio; FastMCP, mcp 1.x)

Tools (every one answers `structuredContent`; failures are reported, never raised):
    fetch {"url"}                      GET through urllib, which honours HTTP(S)_PROXY:
                                       {"status", "body"} or {"error"}
    tunnel {"host", "port", "path"}    CONNECT host:port through $HTTPS_PROXY by hand, then a plain
                                       GET of `path` inside the tunnel: {"connect": status line,
                                       "body"} (the proxy's refusal body when it refuses)
    direct {"host", "port"}            socket.create_connection, bypassing any proxy:
                                       {"connected": true} or {"error": errno name}
    sockets {}                         which socket families this process may create:
                                       {"AF_INET": "ok" or errno name, "AF_INET6", "AF_UNIX",
                                       "AF_NETLINK", "AF_PACKET", "AF_VSOCK": ...}
    bind {"port"}                      bind and listen on 127.0.0.1:port: {"bound": true} or {"error"}
    proxy_env {}                       the *_proxy variables of its environment
"""

from __future__ import annotations

import errno
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mcp.server.fastmcp import FastMCP

mcp = FastMCP("fetch")


def _error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, OSError) and exc.reason.errno:
        return errno.errorcode.get(exc.reason.errno, str(exc.reason.errno))
    return f"{type(exc).__name__}: {exc}"


@mcp.tool()
def fetch(url: str) -> dict[str, Any]:
    """GET `url` through the proxy the environment names."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return {"status": response.status, "body": response.read(65536).decode("utf-8", "replace")}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read(65536).decode("utf-8", "replace")}
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        return {"error": _error(exc)}


def _read_head(sock: socket.socket) -> tuple[str, bytes]:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


@mcp.tool()
def tunnel(host: str, port: int, path: str = "/") -> dict[str, Any]:
    """CONNECT host:port through $HTTPS_PROXY, then GET `path` inside the tunnel."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if not proxy:
        return {"error": "no HTTPS_PROXY"}
    parsed = urllib.parse.urlsplit(proxy)
    status = ""
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 80), timeout=10) as sock:
            sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head, rest = _read_head(sock)
            status = head.split("\r\n", 1)[0]
            if " 200 " not in status + " ":
                body = rest
                while len(body) < 65536:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    body += chunk
                return {"connect": status, "body": body.decode("utf-8", "replace")}
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            body = b""
            while len(body) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                body += chunk
            return {"connect": status, "body": body.decode("utf-8", "replace")}
    except Exception as exc:  # noqa: BLE001
        return {"error": _error(exc), "connect": status}


@mcp.tool()
def direct(host: str, port: int) -> dict[str, Any]:
    """Connect to host:port directly, bypassing any proxy."""
    try:
        with socket.create_connection((host, port), timeout=5):
            return {"connected": True}
    except Exception as exc:  # noqa: BLE001
        return {"error": _error(exc)}


@mcp.tool()
def sockets() -> dict[str, Any]:
    """Which socket families this process may create."""
    out = {}
    kinds = {"AF_INET": socket.SOCK_STREAM, "AF_INET6": socket.SOCK_STREAM, "AF_UNIX": socket.SOCK_STREAM,
             "AF_NETLINK": socket.SOCK_RAW, "AF_PACKET": socket.SOCK_RAW, "AF_VSOCK": socket.SOCK_STREAM}
    for name, kind in kinds.items():
        try:
            socket.socket(getattr(socket, name), kind).close()
            out[name] = "ok"
        except OSError as exc:
            out[name] = _error(exc)
    return out


@mcp.tool()
def bind(port: int) -> dict[str, Any]:
    """Bind and listen on 127.0.0.1:port."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
            return {"bound": True}
    except Exception as exc:  # noqa: BLE001
        return {"error": _error(exc)}


@mcp.tool()
def proxy_env() -> dict[str, Any]:
    """The *_proxy variables of this process's environment."""
    return {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}


if __name__ == "__main__":
    mcp.run()
