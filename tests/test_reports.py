"""t2i.reports: tables, provenance sidecars, the commit they record, and committed reports that come from the code as
it is now."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from t2i import configs, paths, reports
from tests.helpers import ROOT


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def test_a_report_goes_stale_when_a_file_it_was_made_from_changes_and_only_then(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    (tmp_path / "t2i").mkdir()
    (tmp_path / "t2i" / "used.py").write_text("x = 1\n")
    (tmp_path / "t2i" / "unrelated.py").write_text("y = 1\n")
    reports.write_provenance(tmp_path / "table.md", depends_on=["t2i/used.py"])
    record = reports.read_provenance(tmp_path / "table.md")
    assert list(record["code"]) == ["t2i/used.py"] and reports.changed_code(record) == []
    (tmp_path / "t2i" / "unrelated.py").write_text("y = 2\n")
    assert reports.changed_code(record) == []  # an edit elsewhere leaves it fresh
    (tmp_path / "t2i" / "used.py").write_text("x = 2\n")
    assert reports.changed_code(record) == ["t2i/used.py"]  # an edit to what made it makes it stale
    assert reports.changed_code({"depends_on": ["t2i"]}) != []  # a sidecar without hashes is never fresh


def test_a_docstring_or_comment_edit_stales_nothing_and_a_code_edit_does(tmp_path, monkeypatch):
    """The hash is of what the code does: a real module with its docstrings, comments and layout changed is the same
    code; one changed constant is not."""
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    (tmp_path / "t2i").mkdir()
    source = (ROOT / "t2i" / "sampling.py").read_text()
    module = tmp_path / "t2i" / "sampling.py"
    module.write_text(source)
    reports.write_provenance(tmp_path / "fig.png", depends_on=["t2i/sampling.py"])
    record = reports.read_provenance(tmp_path / "fig.png")
    reworded = source.replace('"""Schedulers by name', '"""Samplers, reworded: schedulers by name', 1)
    reworded = reworded.replace("def sample(", "# a new comment\n\n\ndef sample(", 1)
    reworded = reworded.replace('    """Run the reverse process', '    """Run, in other words, the reverse process', 1)
    assert reworded != source
    module.write_text(reworded)
    assert reports.changed_code(record) == []
    module.write_text(reworded.replace("return x\n", "return x * 1\n", 1))
    assert reports.changed_code(record) == ["t2i/sampling.py"]


def test_sidecars_from_before_syntax_hashes_are_compared_by_their_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    (tmp_path / "a.py").write_text("x = 1\n")
    legacy = {"code": {"a.py": reports.file_sha256("a.py")}}
    assert reports.changed_code(legacy) == []
    (tmp_path / "a.py").write_text("# a comment\nx = 1\n")
    assert reports.changed_code(legacy) == ["a.py"]


def imported_code(*statements: str) -> list[str]:
    """``reports.code_files()`` in a fresh process that ran ``statements``: what a report made there depends on."""
    script = "; ".join(["from t2i import reports", *statements, "print('\\n'.join(reports.code_files()))"])
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_a_report_depends_on_exactly_the_t2i_modules_its_process_imported():
    bare = imported_code()
    assert "t2i/reports.py" in bare and "t2i/paths.py" in bare and "t2i/train.py" not in bare
    assert "t2i/train.py" in imported_code("import t2i.train")


def test_one_experiments_report_does_not_depend_on_another_experiments_file():
    """Listing the experiments imports none of them: a code edit in experiments/celeba.py stales no MNIST report."""
    files = imported_code("from t2i import configs", "configs.get('mnist', 'demo')", "print(configs.EXPERIMENTS)")
    assert "t2i/experiments/mnist.py" in files
    assert not {"t2i/experiments/celeba.py", "t2i/experiments/cifar10.py", "t2i/experiments/wikiart.py"} & set(files)


def test_every_committed_report_was_made_by_the_code_as_it_is_now():
    """A report in reports/ is a defect if a source file it was made from (its provenance's ``code`` hashes) is not
    what it was then: the committed number would not be what the committed code prints."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = [ROOT / p for p in git("ls-files", "reports").splitlines() if p.endswith(".provenance.json")]
    assert tracked, "no committed reports"
    stale = []
    for path in tracked:
        changed = reports.changed_code(json.loads(path.read_text()))
        if changed:
            stale.append(f"{path.relative_to(ROOT)} ({', '.join(changed[:4])}{' ...' if len(changed) > 4 else ''})")
    assert not stale, "regenerate these reports with the command in their provenance:\n" + "\n".join(stale)


def test_every_committed_report_made_from_other_reports_was_made_from_them_as_they_are_now():
    """A report that reads other reports (the verdicts across models, t2i.replication) is stale when one of them was
    redrawn since, whatever its code hashes say: its provenance's ``read_sha256`` names the bytes it read."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = [ROOT / p for p in git("ls-files", "reports").splitlines() if p.endswith(".provenance.json")]
    readers = {p: json.loads(p.read_text()).get("read_sha256") for p in tracked}
    readers = {p: read for p, read in readers.items() if read}
    assert readers, "no committed report records what it read (make guidance-models writes guidance/models.md)"
    stale = [
        f"{path.relative_to(ROOT)}: {source}"
        for path, read in readers.items()
        for source, sha in read.items()
        if not (ROOT / source).is_file() or hashlib.sha256((ROOT / source).read_bytes()).hexdigest() != sha
    ]
    assert not stale, "redraw these reports (the command in their provenance); they read what changed since:\n" + (
        "\n".join(stale)
    )


def test_table_is_written_as_markdown_csv_and_latex(tmp_path):
    rows = [
        {"guidance_scale": 0.0, "adherence": 0.1234, "samples": 100},
        {"guidance_scale": 5.0, "adherence": 0.9, "samples": 100},
    ]
    md = reports.write_table(rows, tmp_path / "t", caption="w convention")
    assert md.splitlines()[0] == "| guidance_scale | adherence | samples |"
    assert "| 0.000 | 0.123 | 100 |" in md
    assert (tmp_path / "t.csv").read_text().splitlines()[1] == "0.0,0.1234,100"
    assert r"guidance\_scale & adherence & samples \\" in (tmp_path / "t.tex").read_text()


def test_provenance_records_commit_config_and_facts(tmp_path):
    cfg = configs.get("mnist", "smoke")
    inside, outside = reports.paths.ROOT / "runs" / "mnist" / "x" / "checkpoints" / "epoch-0001", tmp_path / "elsewhere"
    path = reports.write_provenance(tmp_path / "fig.png", cfg, seed=3, samples=10, checkpoint=inside, other=outside)
    record = json.loads(path.read_text())
    assert record["checkpoint"] == "runs/mnist/x/checkpoints/epoch-0001" and record["other"] == str(outside)
    assert path.name == "fig.provenance.json"
    assert record["git_commit"] and record["seed"] == 3 and record["samples"] == 10
    assert record["config"]["experiment"] == "mnist"


def test_commit_is_dirty_for_code_changes_but_not_for_regenerated_reports(tmp_path, monkeypatch):
    import subprocess

    repo = tmp_path / "repo"
    (repo / "reports").mkdir(parents=True)
    (repo / "code.py").write_text("a = 1\n")
    (repo / "reports" / "fig.png").write_bytes(b"old")
    git = lambda *args: subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(reports.paths, "ROOT", repo)
    clean = reports.git_commit()
    assert len(clean) == 40
    (repo / "reports" / "fig.png").write_bytes(b"new")
    assert reports.git_commit() == clean
    (repo / "code.py").write_text("a = 2\n")
    assert reports.git_commit() == clean + "-dirty"
