"""Every public name has a numpydoc docstring with an Examples section, and the API page lists it.

The public names are ``shatterkit.__all__`` and the ``__all__`` of every public submodule
(``shatterkit/<name>`` without a leading underscore), discovered rather than listed, so a new
module is checked the day it lands. The docstrings' Examples run as doctests through
``--doctest-modules`` (pyproject.toml); this file checks that they exist and that the docstrings
are valid numpydoc.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import shatterkit

numpydoc = pytest.importorskip("numpydoc", reason="needs numpydoc (the test extra)")
from numpydoc.docscrape import NumpyDocString  # noqa: E402
from numpydoc.validate import validate  # noqa: E402

API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.rst"

#: numpydoc checks left out, and why; every other check (numpydoc.validate.ERROR_MSGS) applies.
IGNORED_CHECKS = {
    # "No extended summary found": a one-line summary fully describes simple functions such as
    # inputs.line; an extended summary there would repeat the Parameters section.
    "ES01",
    # "See Also section not found": not every function has a natural neighbour (theory's
    # closed forms, noise.white); the API page groups related functions instead.
    "SA01",
}


def _public_modules() -> list[ModuleType]:
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(shatterkit.__path__)
        if not info.name.startswith("_")
    )
    return [shatterkit] + [importlib.import_module(f"shatterkit.{name}") for name in names]


def _public_objects() -> Iterator[tuple[str, Any]]:
    """(dotted public name, object) for every function and class in a public ``__all__``."""
    for module in _public_modules():
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj


def _unique(objects: Iterator[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """One entry per object, under its shortest public name (shatterkit.input_gradients, not
    shatterkit.probes.input_gradients)."""
    by_id: dict[int, tuple[str, Any]] = {}
    for name, obj in sorted(objects, key=lambda item: (item[0].count("."), item[0])):
        by_id.setdefault(id(obj), (name, obj))
    return sorted(by_id.values(), key=lambda item: item[0])


PUBLIC = _unique(_public_objects())


def test_every_public_module_declares_all_and_has_a_docstring():
    for module in _public_modules():
        assert inspect.getdoc(module), f"{module.__name__} has no module docstring"
        assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_numpydoc_docstring_with_examples(name, obj):
    result = validate(f"{obj.__module__}.{obj.__qualname__}")
    errors = [(code, msg) for code, msg in result["errors"] if code not in IGNORED_CHECKS]
    assert not errors, f"{name}: " + "; ".join(f"{code} {msg}" for code, msg in errors)
    assert NumpyDocString(result["docstring"])["Examples"], f"{name} has no Examples section"


def _documented_objects() -> set[int]:
    """ids of the objects listed in the autosummary tables of docs/api.rst."""
    documented: set[int] = set()
    module = "shatterkit"
    in_autosummary = False
    for line in API_PAGE.read_text().splitlines():
        if m := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = m.group(1)
        elif line.startswith(".. autosummary::"):
            in_autosummary = True
        elif in_autosummary and re.match(r"\S", line):
            in_autosummary = False
        elif in_autosummary and (m := re.match(r"   ([A-Za-z_]\w*)\s*$", line)):
            documented.add(id(getattr(importlib.import_module(module), m.group(1))))
    return documented


def test_api_page_lists_every_public_function_and_class():
    documented = _documented_objects()
    missing = sorted({name for name, obj in PUBLIC if id(obj) not in documented})
    assert not missing, f"add these to an autosummary table of docs/api.rst: {missing}"
