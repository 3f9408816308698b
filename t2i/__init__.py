"""t2i: CLIP-conditioned diffusion U-Nets with classifier-free guidance.

The notebooks in ``notebooks/`` are thin drivers over this package. Modules, lower layers first (imports only point
down, and there are no import cycles):

- :mod:`t2i.errors`      what a user can fix (one-line messages on the command line)
- :mod:`t2i.files`       atomic writes and build-once locks; :mod:`t2i.hub` every Hub download pinned to a commit
- :mod:`t2i.paths`       where data, runs and reports live (anchored at the project root)
- :mod:`t2i.experiments` one file per experiment: its thesis values and profiles (``full`` / ``demo`` / ``smoke``)
- :mod:`t2i.configs`     the config schema, its checks, and ``configs.get(experiment, profile)``
- :mod:`t2i.console`     progress bars for terminals, JupyterLab and papermill
- :mod:`t2i.text`        frozen text encoder, caption -> embedding cache, class caption table
- :mod:`t2i.models`      the diffusers UNet built from a config
- :mod:`t2i.vae`         the latent codec around diffusers' ``AutoencoderKL``
- :mod:`t2i.sampling`    schedulers by name and the sampling loop
- :mod:`t2i.guidance`    guidance methods as denoiser wrappers (CFG and six from the literature)
- :mod:`t2i.data`        one module per dataset (mnist, digits, cifar10, wikiart, celeba) + spec + registry;
  shards, derived, images, latents, synthetic: the machinery they share
- :mod:`t2i.objectives`  what a training step minimises, with the conditioner that embeds a batch's conditions
- :mod:`t2i.runs`        a run folder's config and logs; :mod:`t2i.checkpoints` atomic, verified checkpoints
- :mod:`t2i.batches`     batches on the device; :mod:`t2i.timing` per-stage timing; :mod:`t2i.tracking` trackers;
  :mod:`t2i.distributed` what processes agree on; :mod:`t2i.preemption` signals -> checkpoint and stop
- :mod:`t2i.train`       the loop and its state (``fit``, ``Trainer``, ``Hook``)
- :mod:`t2i.pipeline`    a trained run as a prompt -> image function
- :mod:`t2i.metrics`, :mod:`t2i.judges`, :mod:`t2i.evaluate`  FID/KID/IS/CLIP score, adherence judges, guidance sweeps
- :mod:`t2i.reports`, :mod:`t2i.figures`, :mod:`t2i.artefacts`, :mod:`t2i.thesis`  tables, plots and provenance;
  drawing; how each thesis artefact is drawn, and their registry behind ``make figures``
- :mod:`t2i.comparison`  every guidance method on one fidelity / adherence front (``make guidance``)
- :mod:`t2i.watch`       sample grids and evaluations while a run trains
- :mod:`t2i.assets`, :mod:`t2i.experiment`, :mod:`t2i.cli`, :mod:`t2i.bench`  asset checks; the steps notebooks share;
  the command line; benchmarks
"""

import os

__version__ = "0.1.0"

# $TORCHINDUCTOR_CACHE_DIR as the user set it before starting Python, read before anything imports diffusers (which
# sets it to inductor's default directory): t2i.train.compile_cache_dir.
USER_COMPILE_CACHE = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
