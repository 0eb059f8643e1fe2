"""`import trace` must give this package, not the standard library's module (DESIGN.md §9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trace

ROOT = Path(__file__).resolve().parents[2]


def test_import_trace_is_this_package() -> None:
    assert getattr(trace, "IS_TRACE_PLATFORM", False) is True
    assert Path(trace.__file__).resolve() == ROOT / "trace" / "__init__.py"
    assert not hasattr(trace, "Trace")  # the standard library module's class


def test_a_fresh_interpreter_in_the_checkout_gets_this_package() -> None:
    # What `make run`, `flask --app trace` and gunicorn --chdir rely on.
    code = "import trace, sys; print(trace.IS_TRACE_PLATFORM, trace.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    flag, path = out.split()
    assert flag == "True" and Path(path).resolve() == ROOT / "trace" / "__init__.py"


def test_elsewhere_the_standard_library_wins() -> None:
    # The reason for the rule: outside the checkout, the name belongs to the stdlib.
    out = subprocess.run(
        [sys.executable, "-I", "-c", "import trace; print(hasattr(trace, 'Trace'))"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "True"
