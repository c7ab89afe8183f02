"""Corpora, prompt sets and tokenizers."""
