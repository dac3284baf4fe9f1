"""The install: every package of the source tree is installed, and the models are the package ``brecha_ml``
(the folder ml/), not a generic top-level ``ml`` in site-packages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {folder: name for name, folder in config["package-dir"].items()}
    on_disk = set()
    for init in [*ROOT.glob("brecha/**/__init__.py"), *ROOT.glob("ml/**/__init__.py")]:
        parts = init.parent.relative_to(ROOT).parts
        on_disk.add(".".join((mapped.get(parts[0], parts[0]), *parts[1:])))
    assert on_disk == set(config["packages"])


def test_models_import_as_brecha_ml_and_not_as_ml(tmp_path: Path):
    """Outside the source tree (no cwd on sys.path), as an installed user runs it."""
    code = (
        "import importlib.util, brecha_ml.train, sys; "
        "print(brecha_ml.train.__file__); print(importlib.util.find_spec('ml'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    train_file, ml_spec = out.stdout.split("\n")[:2]
    assert Path(train_file) == ROOT / "ml" / "train.py"
    assert ml_spec == "None"
