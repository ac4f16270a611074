"""The API reference covers the public API, and names only what exists.

Every name in the ``__all__`` of the core (``stochgrad``), of each application package, of
``stochgrad.checkpoint`` and ``stochgrad.parallel``, and of each public submodule of
``stochgrad.apps.rl`` and ``stochgrad.studies`` (packages without an ``__all__`` of their own)
must appear on a page of ``docs/api``: as a ``::: identifier`` directive or in the ``members:``
list of one. A name re-exported from the module that defines it may be documented there once.
So a name added to an ``__all__`` without a reference entry fails here, and the reference cannot
shrink silently. The pages themselves are rendered by ``make docs`` (``mkdocs build --strict``,
part of ``make test``), which fails on any docstring the renderer cannot match to a signature.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

API_DOCS = Path(__file__).resolve().parent.parent / "docs" / "api"

#: modules whose ``__all__`` is documented as a whole
MODULES = (
    "stochgrad",
    "stochgrad.apps.rl",
    "stochgrad.apps.hmm",
    "stochgrad.apps.telegraph",
    "stochgrad.apps.ebm",
    "stochgrad.apps.vi",
    "stochgrad.apps.finance",
    "stochgrad.apps.design",
    "stochgrad.apps.offpolicy",
    "stochgrad.apps.molecules",
    "stochgrad.apps.discrete_vae",
    "stochgrad.studies",
    "stochgrad.checkpoint",
    "stochgrad.parallel",
)

_MISSING = object()


def parse_directives(text: str) -> list[tuple[str, list[str] | None]]:
    """``(identifier, members)`` of each ``::: identifier`` block of a page.

    ``members`` is the block's ``members:`` list (empty for ``members: false``), ``None`` when
    the block has none. Only the block-list form (``- name`` lines) is read; anything else after
    ``members:`` raises, so a page written another way cannot pass unread.
    """
    out: list[tuple[str, list[str] | None]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("::: "):
            continue
        identifier = line[4:].strip()
        members: list[str] | None = None
        listing = False
        # the options block: indented (or blank) lines under the directive
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            option = lines[i].strip()
            i += 1
            if option.startswith("members:"):
                value = option.removeprefix("members:").strip()
                if value not in ("", "false"):
                    raise ValueError(
                        f"{identifier}: write members as '- name' lines, got {value!r}"
                    )
                members, listing = [], value == ""
            elif listing and option.startswith("- "):
                members.append(option[2:].strip())
            elif option:
                listing = False
        out.append((identifier, members))
    return out


def documented_paths(pages: dict[str, str]) -> set[str]:
    """Dotted paths of everything the pages render (directives and their members)."""
    paths: set[str] = set()
    for text in pages.values():
        for identifier, members in parse_directives(text):
            if members is None:
                paths.add(identifier)
            else:
                paths.update(f"{identifier}.{name}" for name in members)
    return paths


def resolve(path: str) -> object:
    """The object at a dotted path (the longest importable prefix, then attributes)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def public_names(module: ModuleType) -> list[str]:
    """``__all__``, or for a module without one the public names it defines itself."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(obj)
        and getattr(obj, "__module__", module.__name__) == module.__name__
    ]


def public_api() -> list[tuple[ModuleType, str]]:
    """``(module, name)`` for every public name the reference must cover."""
    out: list[tuple[ModuleType, str]] = []
    for dotted in MODULES:
        module = importlib.import_module(dotted)
        if hasattr(module, "__all__") or not hasattr(module, "__path__"):
            out += [(module, name) for name in public_names(module)]
            continue
        # a package without __all__: each public submodule's names
        for info in pkgutil.iter_modules(module.__path__, prefix=f"{dotted}."):
            if not info.name.rpartition(".")[2].startswith("_"):
                sub = importlib.import_module(info.name)
                out += [(sub, name) for name in public_names(sub)]
    return out


def missing_names(documented: set[str]) -> list[str]:
    """Public names with no reference entry, neither where exported nor where defined."""
    by_name: dict[str, list[str]] = {}
    for path in documented:
        parent, _, name = path.rpartition(".")
        by_name.setdefault(name, []).append(parent)
    missing = []
    for module, name in public_api():
        if f"{module.__name__}.{name}" in documented:
            continue
        obj = getattr(module, name)
        if not any(resolve(f"{p}.{name}") is obj for p in by_name.get(name, [])):
            missing.append(f"{module.__name__}.{name}")
    return missing


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    found = {p.name: p.read_text(encoding="utf-8") for p in sorted(API_DOCS.glob("*.md"))}
    assert found, f"no reference pages under {API_DOCS}"
    return found


def test_every_public_name_is_in_the_reference(pages):
    missing = missing_names(documented_paths(pages))
    assert not missing, (
        "public names with no entry in docs/api (add a '::: path' directive or a members "
        f"entry): {missing}"
    )


def test_every_reference_entry_exists(pages):
    stale = sorted(p for p in documented_paths(pages) if resolve(p) is _MISSING)
    assert not stale, f"docs/api names objects that do not exist: {stale}"


def test_a_name_left_out_is_reported(pages):
    documented = documented_paths(pages)
    assert "stochgrad.score_function" in documented
    assert missing_names(documented - {"stochgrad.score_function"}) == ["stochgrad.score_function"]
    # a re-export documented only where it is defined still counts
    assert "stochgrad.apps.rl.policy_gradient.Trainer" not in documented
    assert "stochgrad.apps.rl.policy_gradient.Trainer" not in missing_names(documented)


def test_directive_parsing():
    text = (
        "# page\n\n::: a.b\n    options:\n      heading_level: 3\n\n"
        "::: a.c\n    options:\n      members:\n        - x\n        - y\n      show_source: false\n"
        "\n::: a.d\n    options:\n      members: false\ntext\n"
    )
    assert parse_directives(text) == [("a.b", None), ("a.c", ["x", "y"]), ("a.d", [])]
    assert documented_paths({"p": text}) == {"a.b", "a.c.x", "a.c.y"}
    with pytest.raises(ValueError, match="a.e: write members as '- name' lines"):
        parse_directives("::: a.e\n    options:\n      members: [x, y]\n")


def test_home_page_quick_start_runs(capsys, one_thread):
    """The home page's example runs and lands where it says: E[(x - 2)^2] = (mu - 2)^2 + sigma^2
    for x ~ N(mu, sigma^2), so the gradient at (0.5, 1) is (2 (mu - 2), 2 sigma) = (-3, 2)."""
    import torch

    page = (API_DOCS.parent / "index.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```$", page, flags=re.S | re.M)
    assert len(blocks) == 1, len(blocks)
    ns: dict = {"__name__": "index_md"}
    exec(compile(blocks[0], "docs/index.md", "exec"), ns)
    assert "tensor(" in capsys.readouterr().out
    truth = torch.tensor([-3.0, 2.0])
    est = ns["est"]
    assert bool(((est.grad - truth).abs() < 5 * est.stderr).all()), (est.grad, est.stderr)
    assert torch.allclose(ns["sg"].exact_gradient(ns["f"], ns["dist_fn"], ns["theta"]), truth)
