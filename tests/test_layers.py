"""The layers of STYLE.md as import-linter contracts (pyproject.toml [tool.importlinter]): the ground
floor (core, tenancy, audit) imports nothing above it, the journeys kernel imports no domain app and
is used through journeys.public only, billing → invoicing → the features, write-offs beside
reconciliation and consolidation, and operations on top, imported by nobody."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env

PACKAGES = (
    "config", "operations", "core", "tenancy", "audit", "journeys",
    "billing", "invoicing", "reconciliation", "writeoffs", "consolidation",
)
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def _lint(cwd):
    # lint-imports in a clean subprocess: it reads the source, imports nothing of the project
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False
    )


def test_import_contracts_are_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    assert "The house stands in layers" in result.stdout


@pytest.mark.parametrize(
    ("module", "imports", "broken"),
    [
        ("tenancy/probe.py", "import billing.models", "tenancy is not allowed to import billing"),
        ("core/probe.py", "import tenancy.models", "core is not allowed to import tenancy"),
        ("journeys/probe.py", "import invoicing.services", "journeys is not allowed to import invoicing"),
        ("billing/probe.py", "import operations.demo", "billing is not allowed to import operations"),
        ("invoicing/probe.py", "import reconciliation.services", "invoicing is not allowed to import reconciliation"),
        ("writeoffs/probe.py", "import consolidation.models", "writeoffs is not allowed to import consolidation"),
        ("reconciliation/probe.py", "import writeoffs.models", "reconciliation is not allowed to import writeoffs"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(tmp_path, module, imports, broken):
    # A copy of the tree with one import that goes the wrong way: the contracts must catch it.
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pdf", "*.png"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / module).write_text(f"{imports}\n")

    result = _lint(tmp_path)

    assert result.returncode != 0, result.stdout
    assert broken in result.stdout, result.stdout


def test_every_app_of_the_house_is_packaged_and_linted():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    apps = {path.parent.name for path in ROOT.glob("*/apps.py")} | {"config"}
    packaged = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert apps <= packaged, sorted(apps - packaged)
    assert apps == set(project["tool"]["importlinter"]["root_packages"]) == set(PACKAGES)
