"""t2i: CLIP-conditioned diffusion U-Nets with classifier-free guidance.

The notebooks in ``notebooks/`` are thin drivers over this package:

- :mod:`t2i.configs`  one frozen config per experiment, profiles ``full`` / ``demo`` / ``smoke``
- :mod:`t2i.data`     datasets that yield (image, caption id)
- :mod:`t2i.text`     frozen text encoder with a caption -> embedding cache
- :mod:`t2i.models`   the diffusers UNet built from a config
- :mod:`t2i.sampling` schedulers by name, classifier-free guidance, the sampling loop
- :mod:`t2i.train`    the model-agnostic training loop on HF accelerate, checkpoints
- :mod:`t2i.pipeline` a trained run as a prompt -> image function
- :mod:`t2i.judges`   classifiers that measure prompt adherence
- :mod:`t2i.reports`  grids, curves, tables and their provenance
"""

__version__ = "0.1.0"
