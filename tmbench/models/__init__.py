"""What a decoder talks to: ARModel (logits with a KV cache) and MaturationModel (vectors,
in ``tmbench.tm.model``)."""
