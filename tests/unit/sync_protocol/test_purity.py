"""sync_protocol imports only the standard library and msgspec, and does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import sync_protocol

ALLOWED_THIRD_PARTY = {"msgspec"}
FORBIDDEN_STDLIB = {
    "os",
    "io",
    "socket",
    "subprocess",
    "asyncio",
    "sqlite3",
    "pathlib",
    "urllib",
    "http",
    "threading",
    "time",
    "random",
    "shutil",
    "tempfile",
}
OURS = {"backend", "importer", "client_sdk", "infra", "tests"}


def _imports() -> list[tuple[str, str]]:
    root = Path(sync_protocol.__file__).parent
    found = []
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path.name, a.name.split(".")[0]) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((path.name, node.module.split(".")[0]))
    return found


def test_no_project_or_framework_imports() -> None:
    import sys

    for file, top in _imports():
        assert top not in OURS, f"{file} imports {top}"
        assert top not in FORBIDDEN_STDLIB, f"{file} imports {top} (I/O or nondeterminism)"
        assert (
            top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY or top == "__future__"
        ), f"{file} imports third-party {top}"


def test_no_open_calls() -> None:
    root = Path(sync_protocol.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("open", "print", "input"), (
                    f"{path.name} calls {node.func.id}"
                )
