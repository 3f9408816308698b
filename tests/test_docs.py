"""Prose that quotes a report says what the report says (issue 38: a README sentence contradicted its table).

The README and docs/ quote reports between markers::

    <!-- quote: reports/demo/mnist/demo/guidance/summary.md -->
    ...lines copied from that file...
    <!-- /quote -->

Every non-empty line inside must appear, verbatim, as a line of the quoted file: regenerating a report and not the
prose that quotes it fails here, as does a quote edited by hand. Numbers outside quotes are the writer's to keep true.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUOTE = re.compile(r"<!-- quote: (?P<path>\S+) -->\n(?P<body>.*?)<!-- /quote -->", re.S)
PROSE = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def quotes() -> list[tuple[str, str, str]]:
    return [(doc.name, m["path"], m["body"]) for doc in PROSE for m in QUOTE.finditer(doc.read_text())]


@pytest.mark.parametrize("doc, path, body", quotes(), ids=lambda v: v if "\n" not in v else "body")
def test_every_quoted_line_is_in_the_report_it_quotes(doc, path, body):
    source = ROOT / path
    assert source.is_file(), f"{doc} quotes {path}, which does not exist"
    lines = {line.strip() for line in source.read_text().splitlines()}
    for line in (quoted.strip() for quoted in body.splitlines()):
        assert not line or line in lines, f"{doc} quotes {path}, which does not say: {line!r}"


def test_the_guidance_verdicts_are_quoted_not_retold():
    """The guidance verdicts (README and docs/evaluation.md) are quoted from the report's summary."""
    for doc in (ROOT / "README.md", ROOT / "docs" / "evaluation.md"):
        assert "guidance/summary.md -->" in doc.read_text(), f"{doc.name} does not quote the guidance summary"
