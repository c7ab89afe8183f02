"""tmbench: a benchmark and evaluation harness for text-generation decoding.

Built around Token Maturation (TM), a continuous autoregressive language model, and the
classic autoregressive decoders it is measured against. See README.md and DESIGN notes.
"""

__version__ = "0.1.0"
