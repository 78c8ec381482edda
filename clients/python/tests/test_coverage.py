"""The client stays in step with docs/admin-api.yaml: every operation the document names is a
method of both clients (sync and async), marked with that (method, path), and the clients
implement no admin operation the document does not name."""

from __future__ import annotations

import inspect
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
