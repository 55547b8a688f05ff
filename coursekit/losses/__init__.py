"""The course's reference library of sequence-level losses.

One module per family; every public name is re-exported here, so
``from coursekit.losses import token_nll`` is the way to use them.

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

**Mixed precision.** The dtypes the functions' Returns sections give for
half-precision input hold outside ``torch.autocast`` and under CPU autocast.
Where autocast is on, the losses built on a log-softmax over the vocabulary
(the cross-entropies, the distillation losses and CTC; ``chunked_cross_entropy``
is the exception, below) compute in float32, on every device, from the
logits on: they raise their logits or log-probabilities to float32
themselves, before they divide by a temperature and before the
log-softmax. The references they are compared with do not all do so, and
those differ between the CPU and CUDA.

Autocast sorts operations into lists, one set for the CPU and one for CUDA
(and the other accelerators). A matrix product (``F.linear``) runs in the
autocast dtype (bfloat16 or float16) on both. For the references of the
losses here the lists differ:

* CUDA: the float32 lists ``AT_FORALL_FP32`` and ``AT_FORALL_FP32_SET_OPT_DTYPE``
  of the installed ``torch/include/ATen/autocast_mode.h`` hold
  ``nll_loss``, ``kl_div``, ``log_softmax``, ``softmax`` and ``logsumexp``,
  not ``cross_entropy_loss`` or ``ctc_loss``. ``log_softmax`` and
  ``softmax`` are "set_opt_dtype" operations: the header's policy is "If
  the user has explicitly specified a dtype, respect it. Otherwise, set it
  to the autocast type" (float32). ``F.log_softmax`` called from Python
  passes no dtype, so every ``F.kl_div(F.log_softmax(...), ...)`` expression
  computes in float32. ``F.cross_entropy`` is different: with no autocast
  kernel of its own (the dispatcher has none registered for
  ``aten::cross_entropy_loss`` under ``AutocastCUDA``, and one under
  ``AutocastCPU``), its composite kernel runs, and that kernel calls
  ``log_softmax`` with the input's own dtype given explicitly. So under
  CUDA autocast the log-probabilities of half-precision logits stay in the
  half dtype, rounded there, and only ``nll_loss`` then runs in float32: the
  result is float32, the rounding is the half dtype's. The registrations
  and that explicit dtype are checked on the CPU
  (``tests/test_losses_autocast.py`` records the call); the CUDA result
  itself follows from them and has not been run on a GPU
  (``tests/test_losses_cuda.py`` pins it where one is). ``F.ctc_loss`` is
  not autocast on CUDA, and it has no float16 or bfloat16 kernel on any
  device: ``ctc_loss_gpu`` in PyTorch's
  ``aten/src/ATen/native/cuda/LossCTC.cu`` dispatches on
  ``AT_DISPATCH_FLOATING_TYPES`` (float and double), as the CPU kernel does,
  and the installed torch's own OpInfo for ``nn.functional.ctc_loss``
  (``torch/testing/_internal/common_methods_invocations.py``) declares
  ``dtypes=floating_types()`` with no CUDA dtypes of its own. Given
  half-precision log-probabilities outside CPU autocast, it raises
  ``NotImplementedError``.
* CPU (measured with torch 2.13 under bfloat16 autocast): ``F.cross_entropy``,
  ``F.nll_loss``, ``F.kl_div`` and ``F.ctc_loss`` return float32 (CPU autocast
  casts the inputs of ``cross_entropy_loss`` as a whole, log-softmax
  included, and of ``ctc_loss`` to float32), while ``F.log_softmax``,
  ``F.softmax`` and ``torch.logsumexp`` keep bfloat16. So the expressions
  that take ``F.log_softmax`` before ``F.kl_div`` (kd_loss's reference, TRL's
  ``generalized_jsd_loss``) round their log-probabilities to bfloat16 and
  only then compute in float32, and kd_cross_entropy's reference takes
  bfloat16 ``F.softmax`` targets.
* Both: a division is on no list, so a reference's ``logits / temperature``
  of half-precision logits stays in the autocast dtype, rounded before
  anything raises it (the log-softmax on CUDA; on the CPU ``F.kl_div``, or
  ``F.cross_entropy`` as a whole).
* CUDA only: ``exp``, ``expm1``, ``log`` and ``pow`` are on the float32 list
  and ``sum`` and ``cumsum`` on the "set_opt_dtype" one, while CPU autocast
  leaves all six in the input's dtype. So under CUDA autocast a sum of
  half-precision losses (the ``"sum"`` of ``sequence_loss``, ``batch_loss``,
  ``dpo_loss`` and ``simpo_loss``, ``policy_loss_aggregate``'s ``"dr_grpo"``)
  is computed and returned in float32, as are the ratios of
  ``clipped_surrogate`` (an ``exp``), ``kl_penalty``'s ``"k2"`` (a ``pow``)
  and ``"k3"`` (an ``expm1``; ``"k1"``, a difference, keeps the half dtype),
  and ``mrt_risk``'s weights and risk (a ``softmax`` and a ``sum``); the
  totals behind the means are float32 too (a float16 row sum no longer
  overflows at 65520), and the means keep the dtype their Returns give (the
  losses' dtype; float32 for ``policy_loss_aggregate``'s ``"grpo"``,
  ``"bnpo"`` and ``"dapo"``) (read from the header; not run on a GPU).

How coursekit's values compare with each reference:

* token_nll, label_smoothed_nll, confidence_penalty_nll, causal_lm_loss (all
  built on ``nll._log_softmax``) and vocab_parallel_cross_entropy: the
  reference is ``F.cross_entropy`` of the logits. Under CPU autocast it
  computes the same, in float32. Under CUDA autocast it rounds the
  log-probabilities of half-precision logits to their own dtype before
  ``nll_loss`` (above), so for such logits coursekit's value differs from
  it by that rounding and is the closer to the float64 one (emulated on
  the CPU for logits of standard deviation 3 over 1000 classes:
  differences of the order of 5e-3 per token for float16 and 5e-2 for
  bfloat16; not run on a GPU); float32 logits are not rounded, and there
  the two agree. The dtype, float32, is the same on both.
* kd_loss, top_k_teacher, top_k_kd_loss and generalized_jsd: for float32
  logits the reference computes the same at every temperature, on both
  devices, and for half-precision logits on CUDA at a temperature of 1,
  whose division is exact. Otherwise (half-precision logits) it differs
  from coursekit's by the rounding of
  ``logits / temperature`` to the autocast dtype, and on the CPU also by
  that of its ``F.log_softmax`` (or ``F.softmax``) output; coursekit's
  value is the closer to the float64 one (``tests/test_losses_autocast.py``
  measures both, on the CPU, in CUDA's order and in the CPU's, at a
  temperature of 3).
* kd_cross_entropy: its reference ``F.cross_entropy(student_logits /
  temperature, F.softmax(teacher_logits / temperature, dim=-1))`` differs from
  coursekit's as above (its divisions, and its ``F.softmax`` targets on the
  CPU), and on CUDA, for half-precision student logits at every
  temperature, also by its log-probabilities, which ``F.cross_entropy``
  keeps in their dtype there; coursekit's value is the closer to the
  float64 one.
* ctc_loss, and its forward and backward tables: the reference computes the
  same under CPU autocast. Under CUDA autocast, or with no autocast,
  ``F.ctc_loss`` refuses half-precision log-probabilities (above): computing
  them here is the only working path, not a choice between two.

float32 everywhere is chosen because it is the closest to the float64
result, and because one loss that gives a different dtype or precision on
different devices would surprise more than a stated difference from one
reference on one device. chunked_cross_entropy follows ``F.linear`` then
``F.cross_entropy`` as CPU autocast computes them (logits in the autocast
dtype, the loss from them in float32), on CUDA too, except that in
bfloat16 it rounds its shifted logits and their exponentials to bfloat16
before their float32 sum (see its docstring). Autocast leaves float64
tensors alone in all its lists, and so do these losses.
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
