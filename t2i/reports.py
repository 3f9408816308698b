"""Figures and tables for ``reports/``, each with a provenance sidecar.

Every artefact ``name.ext`` gets ``name.provenance.json`` beside it: git commit, the command that made it, package
versions, and what the caller knows (config, seed, checkpoint and its manifest hash, sample count, device), so a
figure in the thesis can be traced to exactly what made it. ``code`` holds a hash of every source file it was made
from (the ``t2i`` modules the process imported, the notebook it ran, or what the writer names): a report is stale when
what one of those files *does* changed, and only then (tests/test_reports.py checks every committed one). The hash
(:func:`code_hash`) is of the file's syntax tree without docstrings, so a comment or a docstring edit stales nothing.
"""

from __future__ import annotations

import ast
import csv
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: papermill, SLURM and the tests have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from . import paths  # noqa: E402
from .configs import ExperimentConfig  # noqa: E402

GUIDANCE_CONVENTION = "eps = eps_uncond + w (eps_cond - eps_uncond); w=0 unconditional, w=1 conditional"
PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "numpy")


def git_commit() -> str:
    """The project's commit, with ``-dirty`` if tracked code has uncommitted changes; ``unknown`` outside git.
    Changes under ``reports/`` do not count: those are the outputs being regenerated. ``$T2I_GIT_COMMIT`` stands in
    where the tree was copied without its git history (a lent GPU machine)."""
    if os.environ.get("T2I_GIT_COMMIT"):
        return os.environ["T2I_GIT_COMMIT"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports"],
            cwd=paths.ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def code_files(depends_on: Sequence[str] | None = None) -> list[str]:
    """The source files a report depends on, relative to the project root: ``depends_on`` (folders expand to their
    ``.py`` files), else every ``t2i`` module this process imported and the notebook it runs (``$T2I_NOTEBOOK``,
    which the Makefile sets for papermill)."""
    root = paths.ROOT.resolve()
    if depends_on is None:
        found = {
            Path(m.__file__).resolve()
            for name, m in list(sys.modules.items())
            if (name == "t2i" or name.startswith("t2i.")) and getattr(m, "__file__", None)
        }
        if os.environ.get("T2I_NOTEBOOK"):
            found.add((root / os.environ["T2I_NOTEBOOK"]).resolve())
    else:
        found = set()
        for entry in depends_on:
            path = (root / entry).resolve()
            found.update(path.rglob("*.py") if path.is_dir() else [path])
    return sorted(
        str(f.relative_to(root))
        for f in found
        if f.is_file() and f.is_relative_to(root) and "__pycache__" not in f.parts
    )


CODE_HASH = "ast-v1"  # what the ``code`` hashes of a sidecar are: :func:`code_hash`


def file_sha256(relative: str) -> str | None:
    """The SHA-256 of a file's bytes (what sidecars written before :data:`CODE_HASH` recorded)."""
    path = paths.ROOT / relative
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def code_hash(relative: str) -> str | None:
    """A hash of what a source file does: the SHA-256 of its syntax tree (``ast.dump``, no line numbers) with every
    docstring and bare string statement removed, so comments, docstrings and layout do not count. A notebook is
    hashed by its code cells (prose, outputs and metadata do not count); any other file, or Python that does not
    parse, by its bytes. None if the file is gone."""
    path = paths.ROOT / relative
    if not path.is_file():
        return None
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text()).get("cells", [])
        sources = [
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells
            if c.get("cell_type") == "code"
        ]
        return hashlib.sha256("\n".join(_syntax(s) for s in sources).encode()).hexdigest()
    if path.suffix == ".py":
        return hashlib.sha256(_syntax(path.read_text()).encode()).hexdigest()
    return file_sha256(relative)


def _syntax(source: str) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [
                s
                for s in body
                if not (
                    isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)
                )
            ]
            node.body = kept or [ast.Pass()]
    return ast.dump(tree)


def changed_code(record: dict) -> list[str]:
    """The source files whose code differs from when the report was made: empty means it is fresh. Sidecars from
    before :data:`CODE_HASH` recorded the bytes, and are compared by bytes."""
    if not isinstance(record.get("code"), dict):
        return ["(no code hashes: made by older code)"]
    current = code_hash if record.get("code_hash") == CODE_HASH else file_sha256
    return [file for file, sha in record["code"].items() if current(file) != sha]


def write_provenance(
    artefact: Path, cfg: ExperimentConfig | None = None, *, depends_on: Sequence[str] | None = None, **facts
) -> Path:
    """Write ``<artefact stem>.provenance.json``: commit, time, the command (``$T2I_COMMAND``, which the Makefile
    sets, else this process's arguments), package versions, the hash of every source file it came from
    (:func:`code_files`), config and whatever facts the caller knows (seed, checkpoint, sample count...)."""
    artefact = Path(artefact)
    record = {
        "artefact": artefact.name,
        "git_commit": git_commit(),
        "code": {file: code_hash(file) for file in code_files(depends_on)},
        "code_hash": CODE_HASH,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": os.environ.get("T2I_COMMAND") or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "packages": {"python": platform.python_version(), **_versions()},
    }
    record.update({k: paths.portable(v) if isinstance(v, Path) else v for k, v in facts.items()})
    if cfg is not None:
        record["config"] = cfg.to_dict()
    path = artefact.with_name(artefact.stem + ".provenance.json")
    path.write_text(json.dumps(record, indent=2))
    return path


def is_fresh(artefact: Path, inputs: dict) -> bool:
    """Was ``artefact`` made from exactly these ``inputs`` (what it was measured on: checkpoint hash, settings...) by
    the code as it is now? Then a command may skip remaking it."""
    record = read_provenance(artefact) if Path(artefact).exists() else None
    return (
        record is not None
        and record.get("inputs") == json.loads(json.dumps(inputs, default=str))
        and not changed_code(record)
    )


def publish(
    out: Path,
    facts: dict,
    *,
    tables: dict[str, tuple[list[dict], str]] = {},
    figures: dict[str, Callable[[Path], Path]] = {},
    texts: dict[str, str] = {},
) -> None:
    """Write a report's tables (``name: (rows, caption)`` -> .md/.csv/.tex), figures (``name.png: draw(path)``) and
    texts (``name.md: markdown``) into ``out``, each with a provenance sidecar of the same ``facts``; the summary
    last, since freshness is judged by it."""
    out.mkdir(parents=True, exist_ok=True)
    for name, (rows, caption) in tables.items():
        write_table(rows, out / name, caption=caption)
        write_provenance(out / f"{name}.md", **facts)
    for name, draw in figures.items():
        write_provenance(draw(out / name), **facts)
    for name, text in texts.items():
        (out / name).write_text(text)
        write_provenance(out / name, **facts)


def skip_if_fresh(out: Path, inputs: dict) -> bool:
    """True (saying so) when ``out``'s summary was made from these inputs by this code: nothing is redrawn."""
    if is_fresh(Path(out) / "summary.md", inputs):
        print(f"{out}: up to date (same checkpoint, settings and code); nothing redrawn")
        return True
    return False


def read_provenance(artefact: Path) -> dict | None:
    path = Path(artefact).with_name(Path(artefact).stem + ".provenance.json")
    return json.loads(path.read_text()) if path.exists() else None


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def image_grid(
    images: torch.Tensor,
    path: Path,
    nrow: int,
    *,
    title: str = "",
    row_labels: Sequence[str] = (),
    col_labels: Sequence[str] = (),
    xlabel: str = "",
    ylabel: str = "",
    cell_inches: float = 0.6,
) -> Path:
    """Save images [N, C, H, W] in [0, 1] as a labelled grid, ``nrow`` images per row."""
    images = images.detach().float().cpu().clamp(0, 1)
    n_rows = -(-len(images) // nrow)
    pad = 1
    grid = make_grid(images, nrow=nrow, padding=pad, pad_value=1.0).permute(1, 2, 0).numpy()
    cell_h, cell_w = images.shape[2] + pad, images.shape[3] + pad
    # long, wrapped row labels (CelebA prompts) need taller cells and room on the left, or they overlap the images
    lines = [label.split("\n") for label in row_labels] or [[""]]
    cell_inches = max(cell_inches, 0.16 * max(map(len, lines)))
    label_inches = 0.065 * max(len(line) for label in lines for line in label)
    fig, ax = plt.subplots(figsize=(max(3.0, nrow * cell_inches + 1.2 + label_inches), n_rows * cell_inches + 1.0))
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([pad / 2 + cell_w * (i + 0.5) for i in range(len(col_labels))], list(col_labels))
    ax.set_yticks([pad / 2 + cell_h * (i + 0.5) for i in range(len(row_labels))], list(row_labels))
    ax.tick_params(length=0, labelsize=8)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if col_labels:
        ax.xaxis.set_label_position("top")
        ax.xaxis.tick_top()
    width_chars = int(fig.get_figwidth() * 13)  # ~13 characters per inch at 8 pt
    ax.set_title("\n".join(textwrap.fill(line, width_chars) for line in title.splitlines()), fontsize=8)
    return save(fig, path)


def loss_curve(losses: dict[str, np.ndarray], path: Path, title: str = "Training loss") -> Path:
    """Per-step MSE (light) and its per-epoch mean (dark) against epochs; ``losses`` from ``train.read_loss_log``."""
    epoch, step, loss = losses["epoch"], losses["step"], losses["loss"]
    steps_per_epoch = np.array([np.sum(epoch == e) for e in np.unique(epoch)])
    # fractional epoch of every step: epoch e spans (e-1, e]
    x = np.concatenate([e - 1 + np.arange(1, n + 1) / n for e, n in zip(np.unique(epoch), steps_per_epoch)])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, loss, color="tab:blue", alpha=0.3, lw=0.8, label="per step")
    epochs = np.unique(epoch)
    ax.plot(epochs, [loss[epoch == e].mean() for e in epochs], "o-", color="tab:blue", ms=3, label="epoch mean")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE(eps, eps_pred)")
    ax.set_yscale("log")
    ax.set_title(f"{title} ({int(step[-1]):,} steps)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def metric_vs_guidance(
    rows: Sequence[dict],
    metric: str,
    path: Path,
    *,
    chance: float | None = None,
    reference: float | None = None,
    reference_label: str = "real vs real",
    title: str = "",
) -> Path:
    """Plot ``metric`` against the guidance scale w (log-ish x axis that still shows w = 0); ``chance`` and
    ``reference`` (the real-vs-real value) are drawn as dashed lines."""
    w = np.array([r["guidance_scale"] for r in rows], dtype=float)
    y = np.array([r[metric] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(w, y, "o-")
    if chance is not None:
        ax.axhline(chance, ls="--", color="gray", label=f"chance ({chance:g})")
    if reference is not None:
        ax.axhline(reference, ls="--", color="tab:green", label=f"{reference_label} ({reference:.3g})")
    if chance is not None or reference is not None:
        ax.legend()
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xticks(w, [f"{v:g}" for v in w])
    ax.set_xlabel("guidance scale w  [" + GUIDANCE_CONVENTION + "]", fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return save(fig, path)


def tradeoff(rows: Sequence[dict], x: str, y: str, path: Path, *, title: str = "") -> Path:
    """``y`` against ``x`` across guidance scales, each point labelled with its w (e.g. FID vs adherence)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    xs, ys = [r[x] for r in rows], [r[y] for r in rows]
    ax.plot(xs, ys, "o-")
    for r, xv, yv in zip(rows, xs, ys):
        ax.annotate(f"w={r['guidance_scale']:g}", (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return save(fig, path)


def write_table(rows: Sequence[dict], path: Path, *, caption: str = "") -> str:
    """Write rows as ``path.md``, ``path.csv`` and ``path.tex``; return the markdown.

    Floats are shown with 3 decimals in markdown and LaTeX, full precision in CSV. The columns are every key of every
    row, in order of appearance; a row without one leaves its cell empty.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for r in rows for key in r))
    rows = [{c: r.get(c, "") for c in columns} for r in rows]
    shown = [[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(cells) + " |" for cells in shown]
    markdown = "\n".join(md) + "\n" + (f"\n{caption}\n" if caption else "")
    path.with_suffix(".md").write_text(markdown)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tex = [
        r"\begin{table}[h]",
        r"\centering",
        r"\begin{tabular}{" + "r" * len(columns) + "}",
        r"\hline",
        " & ".join(map(latex_escape, columns)) + r" \\",
        r"\hline",
    ]
    tex += [" & ".join(map(latex_escape, cells)) + r" \\" for cells in shown]
    tex += [r"\hline", r"\end{tabular}"]
    if caption:
        tex.append(r"\caption{" + latex_escape(caption) + "}")
    tex.append(r"\end{table}")
    path.with_suffix(".tex").write_text("\n".join(tex) + "\n")
    return markdown


# fmt: off
LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
         "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "×": r"$\times$", "·": r"$\cdot$",
         "≤": r"$\leq$", "≥": r"$\geq$", "±": r"$\pm$", "→": r"$\rightarrow$", "²": r"$^2$", "<": r"$<$", ">": r"$>$",
         "|": r"$|$"}
# fmt: on


def latex_escape(text: str) -> str:
    """Plain text as LaTeX that pdflatex compiles: special characters escaped, the few non-ASCII ones we write as
    math."""
    return "".join(LATEX.get(ch, ch) for ch in str(text))


def save(fig, path: Path) -> Path:
    """Write a figure through a temporary file, so a full disk or a kill leaves the old figure (or none), never a
    truncated one; a failed write names the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    try:  # long row labels (WikiArt styles) stay inside
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=path.suffix.lstrip(".") or None)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return path
