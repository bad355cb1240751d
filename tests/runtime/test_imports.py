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
