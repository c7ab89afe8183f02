"""Decoders: one function per decoding method, each owning its loop (see ``tmbench.types``).

Built-ins are reached by name through ``tmbench.registry.DECODERS``; importing this package
imports nothing else. Families: ``greedy``, ``sampling`` (ancestral, top-k, nucleus, typical,
min-p, epsilon, eta), ``beam``, ``contrastive``. Per-step logits filters live in ``filters``,
the shared token loop in ``_loop``. Token Maturation's ``maturation`` decoder lives with its
model in ``tmbench.tm.decode``.
"""
