"""The bubblewrap command and an instance's confinement, run for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ember.sandbox.bubblewrap import Bubblewrap, View, default_runtime_paths

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None or os.geteuid() != 0,
                                reason="needs bubblewrap, and root for an instance's own user")

CONFINED = """
import json, os, sys
from ember.runtime.confine import Confinement, drop, enter
enter(Confinement(uid=2099999, tmp_mb=8))
drop(Confinement(uid=2099999, tmp_mb=8))
sys.path.insert(0, sys.argv[1])
import kept_module
found = {"value": kept_module.VALUE, "tmp": sorted(os.listdir("/tmp")), "uid": os.getuid()}
try:
    open(os.path.join(sys.argv[1], "new.py"), "w")
    found["write"] = "written"
except OSError as exc:
    found["write"] = type(exc).__name__
print(json.dumps(found))
"""


def test_a_runtime_path_under_tmp_stays_visible_read_only_in_an_instance(
        tmp_path: Path) -> None:
    # A runtime directory under /tmp, as a checkout and its venv are on CI.
    assert str(tmp_path).startswith("/tmp/")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "kept_module.py").write_text("VALUE = 'seen'\n")
    runtime.chmod(0o755)
    for parent in [tmp_path, *tmp_path.parents]:
        if parent != Path("/") and str(parent).startswith("/tmp"):
            parent.chmod(parent.stat().st_mode | 0o055)
    code = tmp_path / "code"
    code.mkdir()
    isolation = Bubblewrap(shutil.which("bwrap") or "bwrap",
                           runtime_paths=[*default_runtime_paths(), runtime])
    command = isolation.command([sys.executable, "-c", CONFINED, str(runtime)],
                                View("f", "1", code), binds=())
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["value"] == "seen" and found["uid"] == 2099999, found
    # The instance's own /tmp holds only the way to what was kept (this runtime directory,
    # and the checkout's when it lies under /tmp too), and that is read-only.
    kept = {p.parts[2] for p in isolation.runtime_paths if p.parts[1:2] == ("tmp",)}
    assert str(tmp_path).split("/")[2] in kept
    assert found["tmp"] == sorted(kept), found
    assert found["write"] in ("OSError", "PermissionError"), found
