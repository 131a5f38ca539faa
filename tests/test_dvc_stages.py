"""dvc.yaml declares exactly the knd source files each stage runs, derived from the imports.

A stage's command is `knd <command>`; the command's function in knd/cli.py imports its entry
module, and every knd module reachable from there by an import (lazy ones included) is code the
stage runs. Missing one means DVC would not rerun the stage when that code changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def knd_imports(tree: ast.AST) -> set[str]:
    """Every knd module an AST imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "knd"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "knd":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from knd.data import x`
    return {name for name in found if module_file(name)}


def command_imports() -> dict[str, set[str]]:
    """`knd` command name -> the knd modules its function in cli.py imports."""
    commands = {}
    for node in ast.parse((ROOT / "knd/cli.py").read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "command":
                name = deco.args[0].value if deco.args else node.name.replace("_", "-")
                commands[name] = knd_imports(node)
    return commands


def closure(modules: set[str]) -> set[str]:
    seen, todo = set(), list(modules)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += knd_imports(ast.parse(module_file(name).read_text()))
    files = {module_file(name) for name in seen}
    return {str(f.relative_to(ROOT)) for f in files if f.read_text().strip()}  # not empty inits


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_the_code_it_runs(stage):
    spec = STAGES[stage]
    program, command = spec["cmd"].split()[:2]
    assert program == "knd", f"{stage}: expected a `knd <command>` stage, got {spec['cmd']!r}"
    runs = closure(command_imports()[command])
    declared = {d for d in spec["deps"] if d.startswith("knd/")}
    assert sorted(runs - declared) == [], f"dvc.yaml stage {stage} misses these deps"
    assert sorted(declared - runs) == [], f"dvc.yaml stage {stage} declares code it never runs"


def test_the_derivation_sees_lazy_imports():
    """tracking is imported inside `fit` only: a derivation blind to it would pass too easily."""
    assert "knd/training/tracking.py" in closure({"knd.training.train"})
