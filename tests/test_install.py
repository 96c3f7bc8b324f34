"""`pip install .` and an editable install both expose every subpackage under secsplit.*."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["secsplit", "secsplit.data", "secsplit.models", "secsplit.channel", "secsplit.topologies",
               "secsplit.attacks", "secsplit.defenses", "secsplit.evaluation", "secsplit.evaluation.cli", "secsplit.evaluation.commands.train"]


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["wheel", "editable"])
def test_install_into_throwaway_venv_imports_every_subpackage(tmp_path, editable):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = ["-e", str(ROOT)] if editable else [str(ROOT)]
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", *target], check=True, cwd=tmp_path)
    # Dependencies (torch, ...) come from the test environment, after the throwaway venv's own packages.
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = "import importlib\n" + "\n".join(
        f"m = importlib.import_module({name!r}); print({name!r}, m.__file__)" for name in SUBPACKAGES)
    run = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    files = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert set(files) == set(SUBPACKAGES)
    expected_root = ROOT if editable else Path(purelib)
    for name in ["secsplit.attacks", "secsplit.defenses", "secsplit.evaluation"]:
        assert Path(files[name]).is_relative_to(expected_root), (name, files[name])
    if editable:
        assert Path(files["secsplit.evaluation"]) == ROOT / "evaluation" / "__init__.py"


def test_pyproject_lists_every_package_folder():
    """A subpackage missing from pyproject's list would be left out of `pip install .` silently."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == listed
