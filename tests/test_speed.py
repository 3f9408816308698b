"""t2i.speed: process-wide speed settings; where torch.compile caches its code."""

import os
import subprocess
import sys

from t2i import paths


def test_the_compile_cache_is_the_runs_folder_even_after_diffusers_set_the_variable():
    """Importing diffusers sets TORCHINDUCTOR_CACHE_DIR to inductor's default (per node, in /tmp): a setdefault would
    never take effect. A value the user set before Python started wins."""
    code = (
        "import os, diffusers, t2i.speed as t; print(os.environ.get('TORCHINDUCTOR_CACHE_DIR')); "
        "print(t.compile_cache_dir())"
    )
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    after_import, chosen = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert chosen == str(paths.runs_dir() / ".compile-cache") and after_import != chosen
    mine = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "TORCHINDUCTOR_CACHE_DIR": "/mine"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert mine == ["/mine", "/mine"]
