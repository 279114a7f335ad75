"""Packages import downwards only: the layer order is written once, here, and every ``from dse...``
import in the package (at module level or inside a function) is checked against it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dse"
BASE = ("contract", "errors", "config_io", "pareto", "_lazy", "__init__")
LAYERS = ("base", "arch", "data", "train", "compress", "deploy", "sweep", "results", "console", "cli")
# Upward imports still there, each with why, until the run pipeline above the trainer (issue 29):
# the trainer compresses and times a run at its end, and its config holds the compress settings.
KNOWN_UPWARD = {
    ("dse/train/config.py", "dse.compress.config"),
    ("dse/train/trainer.py", "dse.compress.pipeline"),
    ("dse/train/trainer.py", "dse.deploy.inference_model"),
    ("dse/train/trainer.py", "dse.deploy.latency"),
}


def layer(module: str) -> str:
    part = module.split(".")[1] if "." in module else "__init__"
    return "base" if part in BASE else "cli" if part == "__main__" else part


def imports() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dse") and not node.level:
                found.append((module, node.module, node.lineno))
            elif isinstance(node, ast.Import):
                found += [(module, alias.name, node.lineno) for alias in node.names if alias.name.startswith("dse")]
    return found


def test_every_package_is_in_the_layer_order():
    packages = {layer(module) for module, _, _ in imports()} | {layer(target) for _, target, _ in imports()}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def test_no_package_imports_one_above_it():
    upward = {(f"{module.replace('.', '/')}.py", target): line for module, target, line in imports()
              if LAYERS.index(layer(target)) > LAYERS.index(layer(module))}
    assert set(upward) - KNOWN_UPWARD == set(), sorted(set(upward) - KNOWN_UPWARD)
    assert KNOWN_UPWARD - set(upward) == set(), "an exception is gone: drop it from KNOWN_UPWARD"
