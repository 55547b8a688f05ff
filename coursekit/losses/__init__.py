"""The course's reference library of sequence-level losses.

One module per family; every public name is re-exported here, so
``from coursekit.losses import token_nll`` is the way to use them.

The dtypes the functions' Returns sections give for half-precision input
hold outside ``torch.autocast`` and under CPU autocast. Under CUDA autocast
``sum``, ``cumsum``, ``exp``, ``expm1``, ``log`` and ``pow`` run in float32,
so a sum of half-precision losses (``"sum"`` of ``sequence_loss``,
``batch_loss``, ``dpo_loss``, ``simpo_loss``; ``"dr_grpo"``), the ratios of
``clipped_surrogate``, ``kl_penalty`` and ``mrt_risk`` come back in float32
there, and a float16 sum no longer reaches ``inf`` at 65520 (read from
PyTorch's autocast lists; not run on a GPU). The module
``coursekit.losses._autocast`` gives the details and what was measured.

Masks may be boolean or integer 0/1 tensors (as Hugging Face and TRL pass
them). Every function checks its arguments once; checks that must read tensor
values (a target outside the vocabulary, a negative length, a mask holding a 2)
run on CPU tensors only, because on an accelerator reading a value stalls the
device on every training step. Set the environment variable
``COURSEKIT_CHECK_VALUES=1`` to run them on every device while debugging;
without it, an out-of-range index trips the indexing kernel's device-side
assert, as in PyTorch (``vocab_parallel_cross_entropy``, whose shards index no
whole row, gives ``nan`` there instead), and other bad values are not refused
but computed with: a mask holding a 2 counts as 1, a negative weight or length
or a row with no candidate gives a wrong or non-finite result.
"""

from coursekit.losses.nll import batch_loss, bits_per_token, perplexity, sequence_loss, token_nll
from coursekit.losses.masking import response_mask, sequence_mask, turn_mask
from coursekit.losses.causal import causal_lm_loss
from coursekit.losses.smoothing import label_smoothed_nll
from coursekit.losses.confidence import confidence_penalty_nll
from coursekit.losses.distillation import kd_cross_entropy, kd_loss
from coursekit.losses.jsd import generalized_jsd
from coursekit.losses.topk_kd import top_k_kd_loss, top_k_teacher
from coursekit.losses.risk import leave_one_out_baseline
from coursekit.losses.risk import mrt_risk, reinforce_loss
from coursekit.losses.preference import DPORewards, dpo_loss, dpo_rewards, simpo_loss
from coursekit.losses.surrogate import clipped_surrogate, kl_penalty, sequence_importance_ratio
from coursekit.losses.policy import policy_loss_aggregate
from coursekit.losses.ctc import ctc_backward_variables, ctc_forward_variables, ctc_loss
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
    "turn_mask",
    "causal_lm_loss",
    "label_smoothed_nll",
    "confidence_penalty_nll",
    "kd_loss",
    "kd_cross_entropy",
    "generalized_jsd",
    "top_k_teacher",
    "top_k_kd_loss",
    "mrt_risk",
    "reinforce_loss",
    "dpo_loss",
    "dpo_rewards",
    "DPORewards",
    "simpo_loss",
    "clipped_surrogate",
    "kl_penalty",
    "sequence_importance_ratio",
    "policy_loss_aggregate",
    "ctc_loss",
    "ctc_forward_variables",
    "ctc_backward_variables",
    "leave_one_out_baseline",
    "chunked_cross_entropy",
    "z_loss",
    "vocab_parallel_cross_entropy",
]
