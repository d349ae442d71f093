"""The package's one-way data flow (DESIGN.md §2), checked on the source.

Lower rooms never import higher ones, whether at the top of a module or inside a
function; siblings on one floor do not reach into each other's private names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "medimg"

#: room -> rooms it must never import
FORBIDDEN = {
    "io": {"intensity", "spatial", "bias", "patches", "metrics", "models", "datasets",
           "training", "tasks", "synthetic", "viz", "cli", "runner", "report"},
    "intensity": {"datasets", "training", "tasks", "synthetic", "viz", "cli", "runner"},
    "spatial": {"datasets", "training", "tasks", "synthetic", "viz", "cli", "runner"},
    "bias": {"datasets", "training", "tasks", "synthetic", "viz", "cli", "runner", "patches"},
    "patches": {"datasets", "training", "tasks", "synthetic", "viz", "cli", "runner", "models"},
    "metrics": {"datasets", "training", "tasks", "synthetic", "viz", "cli", "runner", "models"},
    "models": {"datasets", "training", "tasks", "synthetic", "viz", "cli", "runner"},
    "datasets": {"models", "metrics", "training", "synthetic", "tasks", "viz", "cli", "runner"},
    "training": {"datasets", "tasks", "synthetic", "viz", "cli", "runner"},
    "viz": {"datasets", "training", "tasks", "synthetic", "cli", "runner"},
    "synthetic": {"datasets", "training", "tasks", "models", "metrics", "viz", "cli",
                  "runner"},
    "tasks": {"cli", "runner"},
    "config": {"datasets", "training", "tasks", "synthetic", "viz", "cli", "runner"},
    "errors": {"io", "datasets", "training", "tasks", "synthetic", "viz", "cli", "runner"},
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    """(imported module, imported names) of every import in a file, relative resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [a.name for a in node.names]
            yield module, names
            # `from .. import training` imports the module medimg.training
            for a in names:
                yield f"{module}.{a}", []


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_rooms_never_import_higher_ones(path):
    room = _room(_module_name(path))
    forbidden = FORBIDDEN.get(room, set())
    bad = sorted({module for module, _ in _imports(path)
                  if module.startswith("medimg.") and _room(module) in forbidden})
    assert not bad, f"{path.relative_to(PACKAGE)} ({room}) imports {bad}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_names_across_rooms(path):
    room = _room(_module_name(path))
    bad = []
    for module, names in _imports(path):
        if not module.startswith("medimg.") or _room(module) == room:
            continue
        leaf = module.rsplit(".", 1)[-1]
        if (leaf.startswith("_") and not leaf.endswith("__")
                and _room(module) not in ("_fsutil", "_parallel", "_backend")):
            bad.append(module)
        bad += [f"{module}.{n}" for n in names if n.startswith("_") and not n.endswith("__")]
    assert not bad, f"{path.relative_to(PACKAGE)} uses private names of another room: {bad}"


def test_every_room_is_known():
    rooms = {_room(_module_name(p)) for p in SOURCES} - {"medimg"}
    unknown = rooms - set(FORBIDDEN) - {"_fsutil", "_parallel", "_backend", "cli", "runner",
                                        "report", "commands"}
    assert not unknown, f"rooms without a layering rule: {sorted(unknown)}"
