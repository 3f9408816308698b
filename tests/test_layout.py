"""The house's rules that a reader relies on and that no other test would notice breaking."""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "t2i"
LIMIT = 400  # lines per module: split by concern past it (docs/development.md)


@pytest.mark.parametrize("module", sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")))
def test_no_module_is_over_the_line_limit(module):
    lines = len((PACKAGE / module).read_text().splitlines())
    assert lines <= LIMIT, f"t2i/{module} has {lines} lines (limit {LIMIT}): split it by concern"


@pytest.mark.parametrize("ruff", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_finds_nothing(ruff):
    """ruff's pycodestyle and pyflakes rules, and its formatter, at 120 columns (pyproject.toml), on the package and
    the tests: `ruff format t2i tests` fixes what the second one finds."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "ruff", *ruff, "--no-cache", "t2i", "tests"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
