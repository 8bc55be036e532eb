"""The import rules (pyproject.toml `[tool.importlinter]`) can fail: `lint-imports`, which
tests/run.sh runs before pytest, rejects a copy of the package with one forbidden import added."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT

#: contract names, as in pyproject.toml
_LAYERS = "Layers import downwards only (web never imports server or commands)"
_TRIO = "trio, hypercorn and starlette only in server/, web/ and cli"
_STORE = "Above store/, only store.api (store.memory and store.journal only from server)"


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the package copy in `tree`, with the project's own contracts."""
    return subprocess.run([shutil.which("lint-imports") or "lint-imports", "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "faktory_py", tmp_path / "faktory_py",
                    ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.timeout(120)
def test_contracts_hold_for_the_package_as_it_is(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("module", "line", "contract"), [
    ("core/jobs.py", "import trio", _TRIO),
    ("core/lifecycle.py", "from ..server import clock", _LAYERS),
    ("web/views.py", "from ..commands import dispatch", _LAYERS),
    ("server/app.py", "from ..tools import processes", "The runtime never imports tools"),
    ("features/expiry.py", "from ..store import journal", _STORE),
])
def test_a_forbidden_import_fails_the_check(tree: Path, module: str, line: str, contract: str) -> None:
    path = tree / "faktory_py" / module
    text = path.read_text()
    # after `from __future__ import annotations`, which must stay first
    head, future, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + future + line + "  # noqa\n" + rest)
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    # lint-imports wraps long rows: compare with whitespace runs folded to one space
    assert f"{contract} BROKEN" in " ".join(result.stdout.split()), result.stdout
