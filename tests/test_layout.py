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


def test_the_command_line_imports_no_study_so_make_figures_does_not_depend_on_their_code():
    """`make figures` runs through the command line and records every t2i module it imported (t2i.reports.code_files):
    were a study imported there, an edit to the EMA study would stale every thesis figure."""
    import subprocess
    import sys

    studies = (
        "comparison",
        "comparison_front",
        "comparison_report",
        "verdict",
        "sampler_front",
        "ema_front",
        "ema_report",
        "study",
        "replication",
    )
    script = "import sys, t2i.cli; print(' '.join(m for m in sys.modules if m.startswith('t2i.')))"
    done = subprocess.run([sys.executable, "-c", script], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {m.removeprefix("t2i.") for m in done.stdout.split()}
    assert "commands" in imported and not imported & set(studies), sorted(imported & set(studies))
