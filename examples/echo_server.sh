#!/bin/sh
# The smallest MCP stdio server: one tool, `ping`, answering "pong". POSIX sh builtins only, so
# it starts in a millisecond: the leak test starts one per session, a thousand times
# (Tests/Interop/test_attacks_upstream.py). Requests arrive one JSON-RPC message per line with a
# numeric id before the method, as Leasehold's worker writes them.
while IFS= read -r line; do
    id=${line#*\"id\":}
    id=${id%%,*}
    case "$line" in
        *'"method":"initialize"'*)
            printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"echo","version":"1"}}}\n' "$id" ;;
        *'"method":"tools/list"'*)
            printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"ping","description":"Answers pong","inputSchema":{"type":"object"}}]}}\n' "$id" ;;
        *'"method":"tools/call"'*)
            printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"pong"}]}}\n' "$id" ;;
        *'"id":'*)
            printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"method not found"}}\n' "$id" ;;
    esac
done
