"""The runtime is what every instance imports: it must stay stdlib plus msgpack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("pydantic", "fastapi", "sqlalchemy", "orjson", "httpx", "starlette", "typer",
             "rich", "yaml", "alembic", "psycopg", "uvicorn", "anyio", "prometheus_client")


def _modules_after(statement: str) -> list[str]:
    output = subprocess.run(
        [sys.executable, "-P", "-c",
         f"{statement}; import json, sys; print(json.dumps(sorted(sys.modules)))"],
        check=True, capture_output=True, text=True,
    ).stdout
    modules: list[str] = json.loads(output)
    return modules


@pytest.mark.parametrize("module", ["ember.runtime.main", "ember.runtime.zygote"])
def test_runtime_imports_only_stdlib_and_msgpack(module: str) -> None:
    modules = _modules_after(f"import {module}")
    top_level = {name.split(".")[0] for name in modules}
    third_party = top_level - set(sys.stdlib_module_names) - {"msgpack", "ember", "__main__"}
    # site may load distutils hacks and the editable-install finder, and msgpack's compiled
    # extension registers its Cython runtime: none of them are a dependency of ours.
    ignored = ("_distutils", "__editable__", "_virtualenv", "_cython_", "cython_runtime")
    third_party = {name for name in third_party if not name.startswith(ignored)}
    assert third_party == set()
    assert not [name for name in modules if name.split(".")[0] in FORBIDDEN]
    ember_modules = {name for name in modules if name.split(".")[0] == "ember"}
    assert ember_modules <= {"ember"} | {name for name in ember_modules
                                         if name.startswith("ember.runtime")}


def _runtime_imports() -> dict[str, set[str]]:
    """Which runtime modules each runtime module imports (at any depth of its code)."""
    import ast
    from pathlib import Path

    import ember.runtime

    package = Path(ember.runtime.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "ember.runtime":
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "ember.runtime."
            ):
                found.add(str(node.module).split(".")[2])
        graph[path.stem] = found
    return graph


def test_runtime_modules_import_each_other_without_a_circle() -> None:
    graph = _runtime_imports()
    assert graph["process"] == set()  # the leaf the instance, zygote and custom server share
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        assert module not in visiting, f"import circle: {' -> '.join([*visiting, module])}"
        if module in done:
            return
        visiting.append(module)
        for imported in graph.get(module, ()):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_server_code_imports_only_the_protocol_of_the_runtime() -> None:
    """The server shares the wire format (and the init spec) with instances, nothing else:
    not the runtime's web servers, which it never runs."""
    import ast
    from pathlib import Path

    import ember

    root = Path(ember.__file__).parent
    shared = {"ember.runtime.protocol", "ember.runtime.spec"}
    wrong = []
    for path in root.rglob("*.py"):
        if path.is_relative_to(root / "runtime"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "ember.runtime":
                used = {f"ember.runtime.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                used = {node.module}
            elif isinstance(node, ast.Import):
                used = {alias.name for alias in node.names}
            else:
                continue
            runtime = {name for name in used if name.startswith("ember.runtime.")}
            if runtime - shared:
                wrong.append(f"{path.relative_to(root)}: {sorted(runtime - shared)}")
    assert wrong == []
