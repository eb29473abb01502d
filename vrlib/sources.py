"""Which vrlib modules a piece of code runs: the modules it imports, followed through vrlib
transitively (imports inside functions included, since a stage reaches them through its calls).

Two things must know it: a stage's `deps` in dvc.yaml (a change to any of these files reruns
the stage; tests/test_config.py checks dvc.yaml against it) and the RFT resume fingerprint
(a checkpoint written by other reward or loss code is not resumed).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def imported(source: str) -> set[str]:
    """The vrlib modules `source` names in an import statement anywhere, e.g. {"vrlib.rft"}."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vrlib.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "vrlib":  # from vrlib import config, rft as loop
                found |= {f"vrlib.{a.name}" for a in node.names}
            elif node.module.startswith("vrlib."):
                found.add(node.module)
    return {m for m in found if (PACKAGE / f"{m.split('.', 1)[1]}.py").exists()}


def closure(source: str) -> list[Path]:
    """The files of every vrlib module `source` runs, directly or through other vrlib modules,
    sorted."""
    todo, seen = imported(source), set()
    while todo:
        module = todo.pop()
        seen.add(module)
        todo |= imported(module_file(module).read_text()) - seen
    return sorted(module_file(m) for m in seen)


def module_file(module: str) -> Path:
    """vrlib.rft -> <package>/rft.py"""
    return PACKAGE / f"{module.split('.', 1)[1]}.py"
