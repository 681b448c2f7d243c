"""Imports point down the data flow: training only trains; the job joins training, evaluation, export."""

import ast
from pathlib import Path

import keras_softmax

PACKAGE = Path(keras_softmax.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_training_never_imports_evaluation_export_or_the_job():
    for path in sorted((PACKAGE / "training").glob("*.py")):
        upward = {m for m in imported_modules(path)
                  if m.startswith(("keras_softmax.evaluation", "keras_softmax.export", "keras_softmax.job",
                                   "keras_softmax.cli", "keras_softmax.predict"))}
        assert not upward, f"{path.name} imports {sorted(upward)}"


def test_lower_layers_never_import_the_job_or_the_cli():
    for folder in ("heads", "models", "data", "evaluation"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            upward = {m for m in imported_modules(path)
                      if m.startswith(("keras_softmax.job", "keras_softmax.cli", "keras_softmax.training.trainer"))}
            assert not upward, f"{folder}/{path.name} imports {sorted(upward)}"


def test_the_cli_trains_through_the_job():
    commands = PACKAGE.parent / "keras_softmax_cli" / "commands.py"  # the CLI, outside the package (issue 22)
    assert "keras_softmax.job" in imported_modules(commands)
    assert "keras_softmax.training.trainer" not in imported_modules(commands)
