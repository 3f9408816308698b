"""Progress bars that work in a terminal, in JupyterLab and under papermill.

The plain-text tqdm bar (not the widget one) renders in all three: JupyterLab and papermill's ``--log-output``
show carriage-return updates, and no ipywidgets are needed. Outside a terminal it refreshes less often so
executed notebooks and SLURM logs stay small.
"""

from __future__ import annotations

import sys

from tqdm.std import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    kwargs.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 5.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, file=sys.stderr, **kwargs)
