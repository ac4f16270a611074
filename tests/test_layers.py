"""The architecture holds: four layers with arrows one way, small files, clear names, no
unpickling of a user's file.

Layers, from the bottom: core (``stochgrad/*.py``, ``stochgrad/estimators``), apps
(``stochgrad/apps``), studies (``stochgrad/studies``), cli (``stochgrad/cli``). A module may
import only from its own layer or those below, and this counts every import statement, however
deep inside a function (a lazy import is still an arrow), and every ``importlib.import_module``
or ``__import__`` call with a literal name. The deprecation shims that keep moved names working
for one release (``stochgrad._compat``) hold the new locations as data, not imports.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import stochgrad

ROOT = Path(stochgrad.__file__).parent
LAYERS = ("core", "apps", "studies", "cli")
MAX_LINES = 1000
#: Unpickling that reads no file: the driver's own function, sent to its own worker processes.
PICKLE_ALLOWED = {"stochgrad.parallel"}


def layer_of(module: str) -> str:
    """The layer of a dotted module name inside ``stochgrad``."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("apps", "studies", "cli"):
        return parts[1]
    return "core"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in ``tree``, relative ones resolved."""
    out: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # `from stochgrad import cli` names a module too
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call):
            fn = node.func
            called = getattr(fn, "attr", None) or getattr(fn, "id", None)
            if called in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    out.append((node.lineno, arg.value))
    return out


def violations(path: Path, source: str, module: str) -> list[str]:
    """Layer, size and safety violations of one source file."""
    found = []
    lines = source.count("\n")
    if lines > MAX_LINES:
        found.append(f"{path}: {lines} lines (at most {MAX_LINES}: a file holds one idea)")
    tree = ast.parse(source)
    mine = LAYERS.index(layer_of(module))
    for line, name in _imported(tree, module, path.name == "__init__.py"):
        if name != "stochgrad" and not name.startswith("stochgrad."):
            continue
        theirs = layer_of(name)
        if LAYERS.index(theirs) > mine:
            found.append(f"{path}:{line}: {layer_of(module)} imports {name} ({theirs} is above)")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = getattr(node.func.value, "id", "")
        if owner == "torch" and node.func.attr == "load":
            kw = {k.arg: k.value for k in node.keywords}
            v = kw.get("weights_only")
            if not (isinstance(v, ast.Constant) and v.value is True):
                found.append(f"{path}:{node.lineno}: torch.load without weights_only=True")
        if (
            owner == "pickle"
            and node.func.attr in ("load", "loads")
            and (module not in PICKLE_ALLOWED)
        ):
            found.append(f"{path}:{node.lineno}: pickle.{node.func.attr} of data")
    return found


def test_layers_sizes_and_safe_loading():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        problems += violations(path, path.read_text(), module_name(path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source", "expect"),
    [
        (
            "stochgrad.apps.hmm.fit",
            "def f():\n    from stochgrad.cli import main\n",
            "apps imports",
        ),
        ("stochgrad.apps.hmm.fit", "from stochgrad import studies\n", "apps imports"),
        ("stochgrad.apps.hmm.fit", "from ...cli._kit import table\n", "apps imports"),
        (
            "stochgrad.apps.x",
            "import importlib\nimportlib.import_module('stochgrad.cli.rl')\n",
            "apps imports",
        ),  # fmt: skip
        ("stochgrad.graph", "import stochgrad.apps.rl\n", "core imports"),
        ("stochgrad.studies.x", "def g():\n    import stochgrad.cli\n", "studies imports"),
        ("stochgrad.apps.x", "import torch\ntorch.load('a')\n", "weights_only"),
        ("stochgrad.apps.x", "import pickle\npickle.loads(b'')\n", "pickle.loads"),
        ("stochgrad.apps.x", "x = 1\n" * 1001, "1001 lines"),
    ],
)
def test_the_checker_catches_violations(module, source, expect):
    found = violations(Path("f.py"), source, module)
    assert found and expect in found[0]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("stochgrad.cli.rl", "from stochgrad.apps.rl import x\nfrom stochgrad.studies import y\n"),
        ("stochgrad.studies.x", "from stochgrad.apps.hmm import fit\nimport stochgrad\n"),
        ("stochgrad.apps.x", "from stochgrad.checkpoint import save_state\n"),
    ],
)
def test_the_checker_allows_downward_imports(module, source):
    assert violations(Path("f.py"), source, module) == []


def _modules() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.walk_packages(stochgrad.__path__, prefix="stochgrad.")
        if not m.name.endswith("__main__")
    )


def test_no_module_is_shadowed_by_a_name_in_its_package():
    """``stochgrad.x.y`` must be the module ``y``, not a function of ``stochgrad.x`` named ``y``
    (``import stochgrad.x.y as m`` would give the function)."""
    shadowed = []
    for name in _modules():
        parent, _, child = name.rpartition(".")
        module = importlib.import_module(name)
        value = getattr(importlib.import_module(parent), child, module)
        if value is not module:
            shadowed.append(f"{name} is shadowed by {parent}.{child} = {value!r}")
    assert not shadowed, "\n".join(shadowed)
