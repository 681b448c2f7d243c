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


# --------------------------------------------------------------------------- the core (issue 25)
#: The library core: what `pip install keras-softmax` must run with Keras and numpy alone.
CORE = ["floors.py", "names.py", "ops.py", "losses.py", "metrics.py", "cifar100.py", *sorted(f"heads/{p.name}" for p in (PACKAGE / "heads").glob("*.py"))]
STDLIB = {"__future__", "dataclasses", "difflib", "importlib", "inspect", "math", "numbers", "operator", "os", "warnings", "weakref", "typing"}


def module_level_imports(path: Path) -> set[str]:
    """Modules ``path`` imports at module level (not inside functions or classes; inside a top-level
    ``try``, as for an optional import, counts as module level)."""
    names = set()
    body = list(ast.parse(path.read_text(encoding="utf-8")).body)
    for node in body:
        if isinstance(node, ast.Try):
            body.extend(node.body + [n for handler in node.handlers for n in handler.body])
    for node in body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _module_name(relative: str) -> str:
    name = "keras_softmax." + relative.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


def test_the_core_imports_only_keras_numpy_the_standard_library_and_itself_at_module_level():
    for relative in CORE:
        path = PACKAGE / relative
        for module in module_level_imports(path):
            top = module.split(".")[0]
            assert top in {"keras", "numpy", "keras_softmax"} | STDLIB, f"{relative} imports {module}"
            if top == "keras_softmax":
                assert any(module == _module_name(c) or module.startswith(_module_name(c) + ".")
                           for c in CORE) or module in ("keras_softmax.heads", "keras_softmax"), \
                    f"{relative} imports {module}, outside the core"


def test_the_core_has_no_function_level_package_imports():
    """The seven function-local imports that dodged the heads<->losses cycle are gone: none may return."""
    for relative in CORE:
        local = {m for m in imported_modules(PACKAGE / relative) if m.startswith("keras_softmax")}
        local -= {m for m in module_level_imports(PACKAGE / relative)}
        local = {m for m in local if not any(m.startswith(top + ".") for top in module_level_imports(PACKAGE / relative))}
        assert not local, f"{relative} imports {sorted(local)} inside a function"


def test_arrows_point_down_ops_losses_heads_registry():
    def package_imports(relative):
        return {m for m in module_level_imports(PACKAGE / relative) if m.startswith("keras_softmax")}

    assert package_imports("floors.py") == set()  # the lowest: the evaluation layer (no Keras) shares it
    assert package_imports("ops.py") == set()
    assert package_imports("metrics.py") == {"keras_softmax.floors"}
    assert package_imports("losses.py") == {"keras_softmax.ops"}
    for path in sorted((PACKAGE / "heads").glob("*.py")):
        imports = package_imports(f"heads/{path.name}")
        if path.name not in ("registry.py", "__init__.py"):
            assert not any(m.startswith("keras_softmax.losses") or m.endswith("registry") for m in imports), \
                f"heads/{path.name} imports {sorted(imports)}: a layer must not know its loss or the registry"


def test_no_import_cycle_between_package_modules():
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        graph[_module_name(relative)] = {m for m in module_level_imports(path) if m.startswith("keras_softmax")}
    # a module imported as its package's attribute (from keras_softmax.heads import adaptive) is an edge to it
    edges = {name: {m if m in graph else m.rsplit(".", 1)[0] for m in deps} & set(graph) for name, deps in graph.items()}
    core = {_module_name(c) for c in CORE} | {"keras_softmax.heads"}
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in edges.get(node, ()):
            if nxt == node or nxt == "keras_softmax":
                continue
            if state.get(nxt) == "open":
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                # a package's __init__ importing its own submodules is not a cycle of the code
                if not all(n == cycle[0] or n.startswith(cycle[0] + ".") or cycle[0].startswith(n + ".")
                           for n in cycle):
                    raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(core):
        if name not in state:
            visit(name, [name])


def test_the_model_factory_and_the_package_init_never_reach_into_training():
    for relative in ("models/factory.py", "models/__init__.py", "__init__.py"):
        upward = {m for m in imported_modules(PACKAGE / relative) if m.startswith("keras_softmax.training")}
        assert not upward, f"{relative} imports {sorted(upward)}"


def test_owns_projection_is_an_attribute_not_a_getattr_guess():
    for relative in [*CORE, "models/factory.py"]:
        text = (PACKAGE / relative).read_text(encoding="utf-8")
        assert 'getattr(spec.layer_class, "owns_projection"' not in text, relative
        assert "getattr(layer_class, \"owns_projection\"" not in text, relative


def test_import_keras_softmax_registers_everything_the_package_can_put_in_a_keras_file():
    """A fresh ``import keras_softmax`` imports every module that registers a Keras-serializable object
    (MismatchedCrossEntropy lived in ``mismatch``, which it did not import: such models did not load)."""
    import subprocess
    import sys

    registering = sorted(
        _module_name(path.relative_to(PACKAGE).as_posix()) for path in PACKAGE.rglob("*.py")
        if "register_keras_serializable" in path.read_text(encoding="utf-8"))
    code = "import sys, keras_softmax; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent).stdout.split()
    missing = [m for m in registering if m not in loaded]
    assert not missing, f"import keras_softmax does not import {missing}: their objects would not load"
    assert "keras_softmax.training" not in loaded  # the harness stays out of the library's import
