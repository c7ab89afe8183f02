"""The parts of training that are not the loop (the loop and the CLI are ``tmbench.train``).

- ``config``: the config dataclasses, YAML loading with ``a.b=value`` overrides, checks.
- ``data``: the train and valid token streams and the per-step generator.
- ``build``: the model to train, from scratch or from ``init_from``.
- ``optim``: AdamW parameter groups and the warmup + cosine schedule.
- ``objective``: the loss of either kind as a module DDP can wrap (the TM loss itself is
  ``tmbench.tm.objective``).
- ``evaluate``: validation numbers during and after training.
- ``checkpoints``: the run folder's checkpoint (``out/ckpt``): save and resume.

Importing this package imports none of them.
"""
