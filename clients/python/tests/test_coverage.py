"""The client stays in step with docs/admin-api.yaml: every operation the document names is a
method of both clients (sync and async), marked with that (method, path), and the clients
implement no admin operation the document does not name."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import yaml

from leasehold_client import AsyncLeasehold, Leasehold

DOC = Path(__file__).resolve().parents[3] / "docs" / "admin-api.yaml"
HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}


def _normalize(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def documented_operations() -> set[tuple[str, str]]:
    spec = yaml.safe_load(DOC.read_text())
    found = set()
    for path, item in spec["paths"].items():
        for method in item:
            if method in HTTP_METHODS:
                found.add((method.upper(), _normalize(path)))
    return found


def client_operations(client: Any) -> dict[tuple[str, str], list[str]]:
    """(method, path) -> the dotted names of the methods marked with it, e.g. `sessions.create`."""
    found: dict[tuple[str, str], list[str]] = {}

    def visit(owner: Any, prefix: str) -> None:
        for name, member in inspect.getmembers(owner):
            if name.startswith("_"):
                continue
            mark = getattr(member, "__leasehold_operation__", None)
            if mark is not None:
                method, path = mark
                found.setdefault((method, _normalize(path)), []).append(prefix + name)

    visit(client, "")
    for name, resource in vars(client).items():
        if not name.startswith("_") and type(resource).__module__ == "leasehold_client.client":
            visit(resource, name + ".")
    return found


def _clients() -> list[Any]:
    return [Leasehold("http://127.0.0.1:9", "k"), AsyncLeasehold("http://127.0.0.1:9", "k")]


def test_document_has_operations() -> None:
    operations = documented_operations()
    assert ("POST", "/api/v1/sessions") in operations and len(operations) >= 20, operations


def test_every_documented_operation_has_a_client_method() -> None:
    documented = documented_operations()
    for client in _clients():
        implemented = client_operations(client)
        missing = sorted(documented - set(implemented))
        assert not missing, f"{type(client).__name__} lacks methods for: {missing}"
        for operation, names in implemented.items():
            assert len(names) == 1, f"{type(client).__name__}: {operation} is implemented twice: {names}"


def test_no_client_method_for_an_undocumented_operation() -> None:
    documented = documented_operations()
    for client in _clients():
        extra = sorted(set(client_operations(client)) - documented)
        assert not extra, f"{type(client).__name__} implements operations docs/admin-api.yaml does not name: {extra}"


def test_sync_and_async_clients_mirror_each_other() -> None:
    sync, asynchronous = (client_operations(c) for c in _clients())
    assert {k: v for k, v in sync.items()} == {k: v for k, v in asynchronous.items()}
    for operation, (name,) in sync.items():
        owner_sync, owner_async = _clients()
        sync_method = _resolve(owner_sync, name)
        async_method = _resolve(owner_async, name)
        assert not inspect.iscoroutinefunction(sync_method), name
        assert inspect.iscoroutinefunction(async_method), name
        assert _parameters(sync_method) == _parameters(async_method), f"{name}: the signatures differ"


def _resolve(client: Any, dotted: str) -> Any:
    target = client
    for part in dotted.split("."):
        target = getattr(target, part)
    return target


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _resolve_schema(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def request_body_schemas() -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(method, path) -> {media type: resolved schema} for every documented request body."""
    spec = yaml.safe_load(DOC.read_text())
    found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS and "requestBody" in operation:
                found[(method.upper(), path)] = {
                    media: _resolve_schema(spec, content["schema"])
                    for media, content in operation["requestBody"]["content"].items()
                }
    return found


def test_every_request_body_schema_refuses_unknown_members() -> None:
    """The runner refuses a body member its schema does not name (a misspelt `denied_tool_name` must
    not widen a session); every request schema, and every object inside one, says so."""
    spec = yaml.safe_load(DOC.read_text())
    bodies = request_body_schemas()
    assert ("POST", "/api/v1/sessions") in bodies and len(bodies) >= 7, sorted(bodies)
    for (method, path), media_types in bodies.items():
        for media, schema in media_types.items():
            pending = [(f"{method} {path} ({media})", schema)]
            while pending:
                where, node = pending.pop()
                assert node.get("type") == "object" and node.get("additionalProperties") is False, (
                    f"{where}: a request schema must say additionalProperties: false"
                )
                for name, member in node.get("properties", {}).items():
                    member = _resolve_schema(spec, member)
                    if member.get("type") == "object" or "properties" in member:
                        pending.append((f"{where}.{name}", member))


def _sample(parameter: inspect.Parameter) -> Any:
    annotation = str(parameter.annotation)
    if "Sequence" in annotation:
        return ["x"]
    if "bool" in annotation:
        return True
    if "int" in annotation:
        return 1
    return "x"


def test_the_client_sends_only_documented_body_members() -> None:
    """Every JSON body the client builds, with every argument given, names only members of its
    operation's documented schema (the runner refuses any other)."""
    from leasehold_client import _ops

    bodies = request_body_schemas()
    patterns = {(method, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")): (method, path)
                for method, path in bodies}
    patch_fields = [p for p in inspect.signature(Leasehold("http://127.0.0.1:9", "k").sessions.patch).parameters.values()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY]
    built = []
    for name, function in inspect.getmembers(_ops, inspect.isfunction):
        if name.startswith("_") or function.__module__ != _ops.__name__ or name in ("operation", "merge_patch"):
            continue
        parameters = inspect.signature(function).parameters.values()
        if name == "patch_session":
            op = function("s1", _ops.merge_patch(**{p.name: _sample(p) for p in patch_fields}))
        else:
            op = function(**{p.name: _sample(p) for p in parameters})
        if isinstance(op, _ops.Op) and op.body is not None and "json" in (op.content_type or ""):
            built.append(op)
    assert len(built) >= 7, built
    for op in built:
        [key] = [key for (method, pattern), key in patterns.items() if method == op.method and pattern.match(op.path)]
        schema = bodies[key][op.content_type]
        sent = set(json.loads(op.body))
        assert sent <= set(schema["properties"]), f"{key}: the client sends {sorted(sent - set(schema['properties']))}"
