"""Token Maturation (DESIGN 3): the model, its decoder, its training objective and its trace.

- ``model``: :class:`MaturationModel` and :class:`TMConfig`, the network f with alpha and K
  conditioning and the induced distribution (DESIGN 3.1, 3.2, 3.5).
- ``decode``: the ``maturation`` decoder, its loop split into the steps of DESIGN 3.4.
- ``objective``: ``tm_loss``, the training objective on a corrupted tail (DESIGN 3.3).
- ``trace``: what the decoder records with ``trace=True`` (DESIGN 3.4, item 7); the format is
  :class:`tmbench.types.Trace`.

Importing this package imports none of them.
"""
