"""The README's layout table matches the tree: every path it names exists, and every module and package of
sio_push/ (and every top-level folder) is named in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layout_paths() -> list[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    paths: list[str] = []
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        base = ""
        for name in names:
            if "/" in name:
                base = name.rsplit("/", 1)[0] + "/" if not name.endswith("/") else name
                paths.append(name)
            else:
                paths.append(base + name)  # a sibling named after a path, as in `a/b.py`, `c.py`
    return paths


def test_every_path_in_the_layout_table_exists():
    missing = [path for path in _layout_paths() if not (ROOT / path).exists()]
    assert not missing, missing


def test_every_module_and_package_is_in_the_layout_table():
    named = set(_layout_paths())
    package = ROOT / "sio_push"
    unnamed = []
    for entry in sorted(package.iterdir()):
        if entry.name.startswith(("__", ".")) or entry.suffix not in (".py", "") or entry.name == "py.typed":
            continue
        rel = f"sio_push/{entry.name}" + ("/" if entry.is_dir() else "")
        if rel not in named:
            unnamed.append(rel)
    for folder in ("benchmarks/", "client_examples/", "scripts/", "tests/"):
        if folder not in named:
            unnamed.append(folder)
    assert not unnamed, unnamed
