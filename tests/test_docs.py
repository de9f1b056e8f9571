"""The runnable examples in docstrings run and print what they claim.

Examples that need trained artifacts are marked ``+SKIP`` in the docstrings; every
other example is executed here, so documentation cannot drift from the code.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import benchmarks
import convert
import edge_runtime
import train


def _modules() -> list[str]:
    names = []
    for package in (train, convert, edge_runtime, benchmarks):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            if not info.name.endswith("__main__"):
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run_as_written(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # examples that write files write here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (run doctest -v)"
