"""The layers of STYLE.md as import-linter contracts (pyproject.toml [tool.importlinter]): the
journeys kernel imports no domain app, domain apps use only journeys.public, invoicing imports
neither feature, and the features do not import each other."""

import subprocess
import sys

from tests.conftest import ROOT, subprocess_env


def test_import_contracts_are_kept():
    # lint-imports in a clean subprocess: it reads the source, imports nothing of the project
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
