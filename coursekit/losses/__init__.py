"""The course's reference library of sequence-level losses.

One module per family; every public name is re-exported here, so
``from coursekit.losses import token_nll`` is the way to use them.
"""

from coursekit.losses.nll import batch_loss, bits_per_token, perplexity, sequence_loss, token_nll

__all__ = [
    "token_nll",
    "sequence_loss",
    "batch_loss",
    "perplexity",
    "bits_per_token",
]
