"""Causal transformers that map input vectors (B, T, C) to hidden states (B, T, C)."""
