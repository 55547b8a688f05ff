"""The course's reference library of sequence-level losses.

One module per family; every public name is re-exported here, so
``from coursekit.losses import token_nll`` is the way to use them.
"""

from coursekit.losses.nll import batch_loss, bits_per_token, perplexity, sequence_loss, token_nll
from coursekit.losses.masking import response_mask, sequence_mask
from coursekit.losses.causal import causal_lm_loss
from coursekit.losses.smoothing import label_smoothed_nll
from coursekit.losses.distillation import kd_cross_entropy, kd_loss
from coursekit.losses.risk import mrt_risk, reinforce_loss
from coursekit.losses.preference import dpo_loss
from coursekit.losses.policy import policy_loss_aggregate
from coursekit.losses.ctc import ctc_forward_variables, ctc_loss
from coursekit.losses.chunked import chunked_cross_entropy
from coursekit.losses.zloss import z_loss
from coursekit.losses.vocab_parallel import vocab_parallel_cross_entropy

__all__ = [
    "token_nll",
    "sequence_loss",
    "batch_loss",
    "perplexity",
    "bits_per_token",
    "sequence_mask",
    "response_mask",
    "causal_lm_loss",
    "label_smoothed_nll",
    "kd_loss",
    "kd_cross_entropy",
    "mrt_risk",
    "reinforce_loss",
    "dpo_loss",
    "policy_loss_aggregate",
    "ctc_loss",
    "ctc_forward_variables",
    "chunked_cross_entropy",
    "z_loss",
    "vocab_parallel_cross_entropy",
]
