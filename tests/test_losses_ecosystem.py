"""coursekit.losses against the code practitioners run: Hugging Face transformers, TRL, and fairseq's formula.

Every comparison uses the *installed* packages (pinned in requirements.lock) on
random float64 inputs with padding (float32 for ``ForCausalLMLoss``, which
computes in float32 whatever it is given), for several seeds, and checks values
and gradients:

* transformers' ``ForCausalLMLoss`` is a function: it is called as it is, with
  and without ``num_items_in_batch``, over micro-batches of different lengths.
* TRL's DPO and GRPO losses are lines inside ``_compute_loss`` methods that need
  a model, a trainer and an accelerator. The lines that compute the loss are
  quoted here (``TRL_*`` below, with file and line in TRL 1.16.0), looked up in
  the installed file, which must still hold them word for word (an upgrade
  that changes them fails here loudly, and the quotation must then be renewed
  by hand), and executed, so the code run is TRL's own text. ``self`` in those
  lines is a namespace holding only the config values they read.
* TRL's SimPO loss (``CPOTrainer.cpo_loss``) and its ``get_batch_logps`` are
  callable and are called, with the same kind of config namespace as ``self``.
* fairseq cannot be installed here; its ``label_smoothed_nll_loss`` formula is
  written out below with its source.
"""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coursekit.losses import (
    causal_lm_loss,
    clipped_surrogate,
    dpo_loss,
    dpo_rewards,
    kl_penalty,
    label_smoothed_nll,
    policy_loss_aggregate,
    sequence_importance_ratio,
    simpo_loss,
)
from tests.strategies import IGNORE_INDEX, generator

pytestmark = [pytest.mark.ecosystem, pytest.mark.losses]

SEEDS = (0, 1, 2)
TRL_VERSION_QUOTED = "1.16.0"


# --- quoting installed source -----------------------------------------------------------------


def installed_source(module: str) -> tuple[Path, list[str]]:
    """The installed file of ``module`` (found without importing it) and its lines."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, f"{module} is not installed"
    path = Path(spec.origin)
    return path, path.read_text(encoding="utf-8").splitlines()


def locate(module: str, quoted: str) -> int:
    """Line number (1-based) where the installed ``module`` holds the lines of ``quoted``.

    Lines are compared after stripping their indentation, so the quotation may be
    dedented; their order, text and adjacency must be exactly TRL's.
    """
    path, lines = installed_source(module)
    wanted = [line.strip() for line in textwrap.dedent(quoted).strip().splitlines()]
    stripped = [line.strip() for line in lines]
    for start in range(len(stripped) - len(wanted) + 1):
        if stripped[start : start + len(wanted)] == wanted:
            return start + 1
    raise AssertionError(
        f"{path} no longer holds these lines (quoted from TRL {TRL_VERSION_QUOTED}); "
        f"re-read the installed code and renew the quotation:\n{textwrap.dedent(quoted).strip()}"
    )


def run_quoted(module: str, quoted: str, namespace: dict) -> dict:
    """Check that ``module`` holds ``quoted``, execute that text in ``namespace`` (updated) and return it."""
    locate(module, quoted)
    namespace.setdefault("torch", torch)
    namespace.setdefault("F", F)
    exec(compile(textwrap.dedent(quoted).strip(), f"<{module} quoted>", "exec"), namespace)  # noqa: S102
    return namespace


# --- random inputs ---------------------------------------------------------------------------------


def padded_responses(seed: int, batch: int = 6, time: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float64 per-token log-probabilities of a policy and of an older/reference policy, and an integer mask.

    Rows have different lengths (padding at the end, as TRL's ``completion_mask``),
    none empty; the mask is ``torch.long`` 0/1 as TRL passes it.
    """
    g = generator(seed)
    log_probs = -torch.rand(batch, time, generator=g, dtype=torch.float64) * 3 - 0.05
    other = log_probs + torch.randn(batch, time, generator=g, dtype=torch.float64) * 0.3
    lengths = torch.randint(1, time + 1, (batch,), generator=g)
    lengths[0] = time
    mask = (torch.arange(time).unsqueeze(0) < lengths.unsqueeze(1)).long()
    return log_probs, other, mask


def leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)


def assert_same_value_and_gradient(ours_fn, theirs_fn, inputs: list[torch.Tensor], **tolerance) -> None:
    """Both functions of the same leaves: equal values and equal gradients of their sums."""
    ours_inputs, theirs_inputs = [leaf(x) for x in inputs], [leaf(x) for x in inputs]
    ours, theirs = ours_fn(*ours_inputs), theirs_fn(*theirs_inputs)
    torch.testing.assert_close(ours, theirs, **tolerance)
    ours_grads = torch.autograd.grad(ours.sum(), ours_inputs, allow_unused=True)
    theirs_grads = torch.autograd.grad(theirs.sum(), theirs_inputs, allow_unused=True)
    for ours_grad, theirs_grad in zip(ours_grads, theirs_grads):
        if theirs_grad is None:
            assert ours_grad is None or bool((ours_grad == 0).all())
        else:
            torch.testing.assert_close(ours_grad, theirs_grad, **tolerance)


# --- transformers: ForCausalLMLoss --------------------------------------------------------------

FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}


def causal_batch(seed: int, batch: int = 6, time: int = 9, vocab: int = 13):
    """Logits, token ids, and HF labels: the ids with -100 on padding and on a random prompt."""
    g = generator(seed)
    logits = torch.randn(batch, time, vocab, generator=g, dtype=torch.float64) * 2
    ids = torch.randint(0, vocab, (batch, time), generator=g)
    lengths = torch.randint(4, time + 1, (batch,), generator=g)  # every row scores a token after its prompt
    prompts = torch.randint(0, 3, (batch,), generator=g)
    positions = torch.arange(time).unsqueeze(0)
    scored = (positions < lengths.unsqueeze(1)) & (positions >= prompts.unsqueeze(1))
    return logits, ids, scored, ids.masked_fill(~scored, IGNORE_INDEX)


@pytest.mark.parametrize("seed", SEEDS)
def test_causal_lm_loss_equals_for_causal_lm_loss(seed):
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits, ids, scored, labels = causal_batch(seed)
    vocab = logits.shape[-1]
    # ForCausalLMLoss computes in float32 whatever it is given (logits.float()); so do both sides here.
    assert_same_value_and_gradient(
        lambda z: causal_lm_loss(z, ids, loss_mask=scored.int()),
        lambda z: ForCausalLMLoss(z, labels, vocab),
        [logits.float()],
        **FLOAT32,
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_micro_batches_with_num_items_in_batch_add_up_to_for_causal_lm_loss_and_to_the_full_batch(seed):
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits, ids, scored, labels = causal_batch(seed, batch=6)
    vocab = logits.shape[-1]
    # The Trainer counts labels[..., 1:] != -100 over every micro-batch of the step (trainer.py, 5.24.0, l. 2333-2343).
    num_items = sum((part[..., 1:] != IGNORE_INDEX).sum() for part in labels.split(2))
    assert int(num_items) == int(scored[..., 1:].sum())
    micro = [(slice(0, 2)), (slice(2, 3)), (slice(3, 6))]  # micro-batches of different sizes and token counts

    def accumulated(loss_of_part):
        def total(z):
            return sum(loss_of_part(z[part], part) for part in micro)
        return total

    ours = accumulated(lambda z, part: causal_lm_loss(z, ids[part], loss_mask=scored[part], num_items_in_batch=num_items))
    theirs = accumulated(lambda z, part: ForCausalLMLoss(z, labels[part], vocab, num_items_in_batch=num_items))
    assert_same_value_and_gradient(ours, theirs, [logits.float()], **FLOAT32)
    # ... and both are the token mean of the whole batch (what one big batch would give).
    full = leaf(logits)
    torch.testing.assert_close(ours(full), causal_lm_loss(full, ids, loss_mask=scored))


@pytest.mark.parametrize("num_items", [np.int64(40), np.int32(40), np.float32(40.0)], ids=repr)
def test_causal_lm_loss_takes_a_numpy_num_items_in_batch_as_for_causal_lm_loss_does(num_items):
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits, ids, scored, labels = causal_batch(0)
    assert_same_value_and_gradient(
        lambda z: causal_lm_loss(z, ids, loss_mask=scored, num_items_in_batch=num_items),
        lambda z: ForCausalLMLoss(z, labels, logits.shape[-1], num_items_in_batch=num_items),
        [logits.float()],
        **FLOAT32,
    )


def test_for_causal_lm_loss_lowers_float64_where_upcast_keeps_it_and_raises_bfloat16_alike():
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits, ids, scored, labels = causal_batch(3)
    vocab = logits.shape[-1]
    assert ForCausalLMLoss(logits, labels, vocab).dtype == torch.float32
    assert causal_lm_loss(logits, ids, loss_mask=scored).dtype == torch.float64
    half = logits.to(torch.bfloat16)
    ours, theirs = causal_lm_loss(half, ids, loss_mask=scored), ForCausalLMLoss(half, labels, vocab)
    assert ours.dtype == theirs.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, **FLOAT32)


def test_for_causal_lm_loss_is_nan_when_every_label_is_ignored_where_causal_lm_loss_warns_and_gives_0():
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits, ids, _, labels = causal_batch(4)
    nothing = torch.zeros_like(ids, dtype=torch.bool)
    assert torch.isnan(ForCausalLMLoss(logits, torch.full_like(labels, IGNORE_INDEX), logits.shape[-1]))
    with pytest.warns(RuntimeWarning, match="every token is masked"):
        assert causal_lm_loss(logits, ids, loss_mask=nothing).item() == 0.0
    # With num_items_in_batch, a micro-batch with nothing to score contributes 0 on both sides.
    theirs = ForCausalLMLoss(logits, torch.full_like(labels, IGNORE_INDEX), logits.shape[-1], num_items_in_batch=7)
    assert causal_lm_loss(logits, ids, loss_mask=nothing, num_items_in_batch=7).item() == theirs.item() == 0.0


# --- TRL: DPO ---------------------------------------------------------------------------------------

DPO_MODULE = "trl.trainer.dpo_trainer"
# trl/trainer/dpo_trainer.py, TRL 1.16.0, lines 1350-1351 (log-ratios), 1383 (margin), 1387-1388 (sigmoid loss),
# 1528 (mean over pairs, weight 1), 1582-1583 (the logged rewards); QUOTED_AT below pins each first line.
TRL_DPO_LOGRATIOS = """
chosen_logratios = chosen_logps - ref_chosen_logps
rejected_logratios = rejected_logps - ref_rejected_logps
"""
# Lines 1353-1355: with f_divergence_type "reverse_kl" (standard DPO) the scores are the log-ratios.
TRL_DPO_REVERSE_KL = """
if self.f_divergence_type == "reverse_kl":  # standard DPO
    chosen_scores = chosen_logratios
    rejected_scores = rejected_logratios
"""
TRL_DPO_SIGMOID = """
if loss_type == "sigmoid":
    per_sequence_loss = -F.logsigmoid(self.beta * delta_score)
"""
TRL_DPO_MARGIN = "delta_score = chosen_scores - rejected_scores"
TRL_DPO_MEAN = "loss += per_sequence_loss.mean() * loss_weight"
TRL_DPO_REWARDS = """
chosen_rewards = self.beta * chosen_logratios.detach()
rejected_rewards = self.beta * rejected_logratios.detach()
"""
# Lines 1459-1465: the "aot_unpaired" loss, whose smoothing term is conservative DPO's (cDPO).
TRL_DPO_AOT_UNPAIRED = """
chosen_logratios_sorted, _ = torch.sort(chosen_logratios, dim=0)
rejected_logratios_sorted, _ = torch.sort(rejected_logratios, dim=0)
delta = chosen_logratios_sorted - rejected_logratios_sorted
per_sequence_loss = (
    -F.logsigmoid(self.beta * delta) * (1 - self.label_smoothing)
    - F.logsigmoid(-self.beta * delta) * self.label_smoothing
)
"""


def test_trl_sigmoid_loss_ignores_label_smoothing_as_the_docstring_says():
    # The whole "sigmoid" branch of the installed file, up to the next loss type, never reads label_smoothing.
    _, lines = installed_source(DPO_MODULE)
    start = locate(DPO_MODULE, TRL_DPO_SIGMOID) - 1
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("elif loss_type"))
    branch = "\n".join(lines[start:end])
    assert "per_sequence_loss" in branch
    assert "label_smoothing" not in branch, branch


def trl_dpo(chosen, rejected, ref_chosen, ref_rejected, *, beta, label_smoothing=0.0, loss_type="sigmoid"):
    """TRL's DPO loss (reverse KL, one loss type of weight 1) and rewards, by executing its quoted lines."""
    names = {
        "self": SimpleNamespace(beta=beta, label_smoothing=label_smoothing, f_divergence_type="reverse_kl"),
        "chosen_logps": chosen, "rejected_logps": rejected,
        "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected,
        "loss_type": loss_type, "loss": 0.0, "loss_weight": 1.0,
    }
    for quoted in (TRL_DPO_LOGRATIOS, TRL_DPO_REVERSE_KL, TRL_DPO_MARGIN,
                   TRL_DPO_SIGMOID if loss_type == "sigmoid" else TRL_DPO_AOT_UNPAIRED, TRL_DPO_MEAN, TRL_DPO_REWARDS):
        run_quoted(DPO_MODULE, quoted, names)
    return names["loss"], names["chosen_rewards"], names["rejected_rewards"]


def preference_pairs(seed: int, pairs: int = 8) -> list[torch.Tensor]:
    """Sequence log-probabilities (sums over responses of different lengths) of policy and reference."""
    g = generator(seed)
    return [-torch.rand(pairs, generator=g, dtype=torch.float64) * 40 - 1 for _ in range(4)]


@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize("seed", SEEDS)
def test_dpo_loss_equals_trl_sigmoid_loss(seed, beta):
    assert_same_value_and_gradient(
        lambda *x: dpo_loss(*x, beta=beta),
        lambda *x: trl_dpo(*x, beta=beta)[0],
        preference_pairs(seed),
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_dpo_rewards_equal_trl_logged_rewards(seed):
    pairs = preference_pairs(seed)
    _, trl_chosen, trl_rejected = trl_dpo(*pairs, beta=0.3)
    ours = dpo_rewards(*pairs, beta=0.3)
    torch.testing.assert_close(ours.chosen, trl_chosen)
    torch.testing.assert_close(ours.rejected, trl_rejected)


@pytest.mark.parametrize("label_smoothing", [0.1, 0.3])
@pytest.mark.parametrize("seed", SEEDS)
def test_dpo_label_smoothing_equals_trl_conservative_dpo_term(seed, label_smoothing):
    # TRL 1.16's "sigmoid" loss no longer reads label_smoothing; its "aot_unpaired" loss applies cDPO's
    # smoothing to log-ratios sorted over the batch. With log-ratios that are already in increasing order the
    # sort is the identity (and so is its gradient), and that loss is exactly conservative DPO.
    chosen_ref, rejected_ref = preference_pairs(seed)[:2]
    g = generator(100 + seed)
    chosen = chosen_ref + torch.sort(torch.randn(8, generator=g, dtype=torch.float64) * 5).values
    rejected = rejected_ref + torch.sort(torch.randn(8, generator=g, dtype=torch.float64) * 5).values
    assert_same_value_and_gradient(
        lambda *x: dpo_loss(*x, beta=0.2, label_smoothing=label_smoothing),
        lambda *x: trl_dpo(*x, beta=0.2, label_smoothing=label_smoothing, loss_type="aot_unpaired")[0],
        [chosen, rejected, chosen_ref, rejected_ref],
    )


# --- TRL: SimPO (CPOTrainer, called) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cpo_trainer():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    return CPOTrainer


@pytest.mark.parametrize("seed", SEEDS)
def test_simpo_loss_equals_trl_cpo_simpo_loss_on_log_probabilities_from_logits(seed, cpo_trainer):
    logits, ids, scored, labels = causal_batch(seed, batch=8)
    beta, gamma = 2.0, 0.5
    config = SimpleNamespace(alpha=0.0, beta=beta, loss_type="simpo", simpo_gamma=gamma, label_smoothing=0.0,
                             accelerator=SimpleNamespace(device=torch.device("cpu")))

    def theirs(z):
        average = cpo_trainer.get_batch_logps(z, labels, average_log_prob=True)
        losses, _, _ = cpo_trainer.cpo_loss(config, average[:4], average[4:])
        return losses

    def ours(z):
        sums = -causal_lm_loss(z, ids, loss_mask=scored, reduction="none")
        lengths = scored[..., 1:].sum(dim=-1)
        return simpo_loss(sums[:4], sums[4:], lengths[:4], lengths[4:], beta=beta, gamma=gamma, reduction="none")

    assert_same_value_and_gradient(ours, theirs, [logits])


# --- TRL: GRPO -----------------------------------------------------------------------------------

GRPO_MODULE = "trl.trainer.grpo_trainer"
# trl/trainer/grpo_trainer.py, TRL 1.16.0: 3058-3059 (advantages of shape (B,)), 3083-3087 (token and sequence
# log importance weights), 3095 (ratio), 3100-3105 (k3 and its importance-sampling correction), 3113-3120
# (clipping), 3149-3150 (KL term), 3154-3173 (aggregation by loss_type); QUOTED_AT below pins each first line.
TRL_GRPO_ADVANTAGES = """
if advantages.dim() == 1:
    advantages = advantages.unsqueeze(1)
"""
TRL_GRPO_WEIGHTS = """
log_ratio = per_token_logps - old_per_token_logps
if self.importance_sampling_level == "token":
    log_importance_weights = log_ratio
elif self.importance_sampling_level == "sequence":
    log_importance_weights = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    log_importance_weights = log_importance_weights.unsqueeze(-1)
"""
TRL_GRPO_RATIO = "coef_1 = torch.exp(log_importance_weights)"
TRL_GRPO_KL = """
per_token_kl = (
    torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1
)
# Importance sampling correction for the KL divergence
if self.args.use_bias_correction_kl:
    per_token_kl = per_token_kl * coef_1
"""
TRL_GRPO_CLIP = """
coef_2 = torch.clamp(coef_1, 1 - self.epsilon_low, 1 + self.epsilon_high)
# Two-sided clipping
if self.args.delta is not None:
    coef_1 = torch.clamp(coef_1, max=self.args.delta)

per_token_loss1 = coef_1 * advantages
per_token_loss2 = coef_2 * advantages
per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
"""
TRL_GRPO_KL_TERM = """
if self.beta != 0.0:
    per_token_loss = per_token_loss + self.beta * per_token_kl
"""
TRL_GRPO_AGGREGATION = {
    "grpo": "loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()",
    "bnpo": "loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)",
    "dr_grpo": "loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * self.max_completion_length)",
    "dapo": """
        normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
        if mode == "train":  # in eval, the batch is neither split across steps nor accumulated
            normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        loss = (per_token_loss * mask).sum() / normalizer
    """,
}


def trl_config_default(name: str):
    """The default of a ``GRPOConfig`` field, read from the installed dataclass (not instantiated)."""
    import dataclasses

    from trl import GRPOConfig

    (field,) = [f for f in dataclasses.fields(GRPOConfig) if f.name == name]
    return field.default


QUOTED_AT = {  # name: (module, quotation, first line in TRL 1.16.0)
    "dpo log-ratios": (DPO_MODULE, TRL_DPO_LOGRATIOS, 1350),
    "dpo reverse_kl scores": (DPO_MODULE, TRL_DPO_REVERSE_KL, 1353),
    "dpo margin": (DPO_MODULE, TRL_DPO_MARGIN, 1383),
    "dpo sigmoid": (DPO_MODULE, TRL_DPO_SIGMOID, 1387),
    "dpo aot_unpaired": (DPO_MODULE, TRL_DPO_AOT_UNPAIRED, 1459),
    "dpo mean": (DPO_MODULE, TRL_DPO_MEAN, 1528),
    "dpo rewards": (DPO_MODULE, TRL_DPO_REWARDS, 1582),
    "grpo advantages": (GRPO_MODULE, TRL_GRPO_ADVANTAGES, 3058),
    "grpo weights": (GRPO_MODULE, TRL_GRPO_WEIGHTS, 3083),
    "grpo ratio": (GRPO_MODULE, TRL_GRPO_RATIO, 3095),
    "grpo k3": (GRPO_MODULE, TRL_GRPO_KL, 3100),
    "grpo clip": (GRPO_MODULE, TRL_GRPO_CLIP, 3113),
    "grpo kl term": (GRPO_MODULE, TRL_GRPO_KL_TERM, 3149),
    **{f"grpo aggregation {loss_type}": (GRPO_MODULE, TRL_GRPO_AGGREGATION[loss_type], line)
       for loss_type, line in (("grpo", 3154), ("bnpo", 3159), ("dr_grpo", 3164), ("dapo", 3170))},
}


@pytest.mark.parametrize("name", sorted(QUOTED_AT))
def test_every_quotation_sits_at_the_line_the_comments_cite(name):
    # The comments cite TRL 1.16.0's line numbers; a TRL that moves the lines fails here, and the citations
    # (comments and this table) must then be renewed together.
    module, quoted, line = QUOTED_AT[name]
    assert locate(module, quoted) == line


def trl_grpo_loss(per_token_logps, old_per_token_logps, ref_per_token_logps, advantages, mask, *, loss_type,
                  beta=0.04, epsilon=0.2, epsilon_high=None, level="token", max_completion_length=None,
                  num_items_in_batch=None, use_bias_correction_kl=None):
    """TRL's GRPO loss (no vLLM, entropy or off-policy masks; one process; train mode with as many
    gradient-accumulation steps as steps per generation, so dapo's train-mode normaliser line runs and
    leaves num_items_in_batch as it is; the grpo/bnpo/dr_grpo division by the accumulation steps is the
    training loop's, not quoted).

    ``use_bias_correction_kl=None`` takes TRL's own default (``True`` in 1.16: the k3 term times the ratio).
    """
    if use_bias_correction_kl is None:
        use_bias_correction_kl = trl_config_default("use_bias_correction_kl")
    config = SimpleNamespace(
        beta=beta, epsilon_low=epsilon, epsilon_high=epsilon if epsilon_high is None else epsilon_high,
        importance_sampling_level=level, max_completion_length=max_completion_length,
        args=SimpleNamespace(delta=None, steps_per_generation=4, use_bias_correction_kl=use_bias_correction_kl),
        current_gradient_accumulation_steps=4,
        accelerator=SimpleNamespace(num_processes=1),
    )
    names = {
        "self": config, "advantages": advantages, "per_token_logps": per_token_logps,
        "old_per_token_logps": old_per_token_logps, "ref_per_token_logps": ref_per_token_logps, "mask": mask,
        "inputs": {"num_items_in_batch": num_items_in_batch}, "mode": "train",
    }
    for quoted in (TRL_GRPO_ADVANTAGES, TRL_GRPO_WEIGHTS, TRL_GRPO_RATIO, TRL_GRPO_KL, TRL_GRPO_CLIP,
                   TRL_GRPO_KL_TERM, TRL_GRPO_AGGREGATION[loss_type]):
        run_quoted(GRPO_MODULE, quoted, names)
    return names["loss"]


def coursekit_grpo_loss(log_probs, old, ref, advantages, mask, *, loss_type, beta=0.04, epsilon=0.2,
                        epsilon_high=None, level="token", max_completion_length=None, num_items_in_batch=None,
                        use_bias_correction_kl=None):
    """The same objective from coursekit's parts (the KL correction as kl_penalty's docstring shows it)."""
    if use_bias_correction_kl is None:
        use_bias_correction_kl = trl_config_default("use_bias_correction_kl")
    if level == "sequence":
        log_ratio = torch.log(sequence_importance_ratio(log_probs, old, mask)).unsqueeze(-1)
        surrogate = clipped_surrogate(log_ratio, torch.zeros_like(log_ratio), advantages,
                                      eps_low=epsilon, eps_high=epsilon_high).expand_as(log_probs)
        ratio = torch.exp(log_ratio)
    else:
        surrogate = clipped_surrogate(log_probs, old, advantages, eps_low=epsilon, eps_high=epsilon_high)
        ratio = torch.exp(log_probs - old)
    kl = kl_penalty(log_probs, ref)
    if use_bias_correction_kl:
        kl = kl * ratio
    per_token = surrogate + beta * kl
    return policy_loss_aggregate(per_token, mask, mode=loss_type, max_len=max_completion_length,
                                 num_items_in_batch=num_items_in_batch)


def grpo_inputs(seed: int, per_token_advantages: bool = False):
    log_probs, old, mask = padded_responses(seed)
    ref = log_probs + torch.randn(log_probs.shape, generator=generator(50 + seed), dtype=torch.float64) * 0.5
    shape = log_probs.shape if per_token_advantages else log_probs.shape[:1]
    advantages = torch.randn(shape, generator=generator(60 + seed), dtype=torch.float64)
    return log_probs, old, ref, advantages, mask


def compare_grpo(seed: int, **options) -> None:
    log_probs, old, ref, advantages, mask = grpo_inputs(seed, options.pop("per_token_advantages", False))
    assert_same_value_and_gradient(
        lambda lp: coursekit_grpo_loss(lp, old, ref, advantages, mask, **options),
        lambda lp: trl_grpo_loss(lp, old, ref, advantages, mask, **options),
        [log_probs],
    )


@pytest.mark.parametrize("use_bias_correction_kl", [None, False, True])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
@pytest.mark.parametrize("seed", SEEDS)
def test_grpo_and_bnpo_equal_trl(seed, loss_type, use_bias_correction_kl):
    # None: TRL's default for the KL correction, whatever the installed GRPOConfig says.
    compare_grpo(seed, loss_type=loss_type, use_bias_correction_kl=use_bias_correction_kl)


def test_trl_default_kl_term_is_the_ratio_times_k3_whose_gradient_differs_from_k3_alone():
    # kl_penalty's docstring: TRL multiplies k3 by the (differentiable) ratio by default; on-policy the value is
    # k3's, the gradient is log(p/p_ref) per token where k3's is 1 - p_ref/p.
    assert trl_config_default("use_bias_correction_kl") is True
    log_probs, _, ref, _, _ = grpo_inputs(3)
    names = {"per_token_logps": leaf(log_probs), "ref_per_token_logps": ref,
             "self": SimpleNamespace(args=SimpleNamespace(use_bias_correction_kl=True))}
    names["coef_1"] = torch.exp(names["per_token_logps"] - log_probs)  # on-policy: old = log_probs, detached
    run_quoted(GRPO_MODULE, TRL_GRPO_KL, names)
    torch.testing.assert_close(names["per_token_kl"], kl_penalty(log_probs, ref))
    (gradient,) = torch.autograd.grad(names["per_token_kl"].sum(), names["per_token_logps"])
    torch.testing.assert_close(gradient, log_probs - ref)
    ours = leaf(log_probs)
    (k3_gradient,) = torch.autograd.grad(kl_penalty(ours, ref).sum(), ours)
    torch.testing.assert_close(k3_gradient, 1 - torch.exp(ref - log_probs))


@pytest.mark.parametrize("seed", SEEDS)
def test_dr_grpo_equals_trl_with_max_len_set_to_max_completion_length(seed):
    compare_grpo(seed, loss_type="dr_grpo", max_completion_length=16)


@pytest.mark.parametrize("seed", SEEDS)
def test_dapo_with_num_items_in_batch_and_clip_higher_equals_trl(seed):
    _, _, mask = padded_responses(seed)
    whole_batch = mask.sum() + 11  # TRL counts the whole generation batch, more than this micro-batch
    compare_grpo(seed, loss_type="dapo", epsilon_high=0.28, num_items_in_batch=whole_batch)


@pytest.mark.parametrize("seed", SEEDS)
def test_per_token_advantages_and_no_kl_equal_trl(seed):
    compare_grpo(seed, loss_type="bnpo", beta=0.0, per_token_advantages=True)


@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("seed", SEEDS)
def test_gspo_sequence_ratio_equals_trl_sequence_importance_sampling(seed, beta):
    # beta = 0.04: TRL corrects the KL term by the sequence ratio there, as kl_penalty's docstring says.
    compare_grpo(seed, loss_type="grpo", level="sequence", beta=beta)


def test_kl_penalty_docstring_gives_the_sequence_ratio_correction_for_gspo():
    # Following the token-level recipe under importance_sampling_level="sequence" gives another KL term than TRL's.
    doc = " ".join(kl_penalty.__doc__.split())
    assert 'importance_sampling_level="sequence"' in doc
    assert "kl_penalty(log_probs, ref) * sequence_importance_ratio(log_probs, old_log_probs, mask).unsqueeze(-1)" in doc
    log_probs, old, ref, advantages, mask = grpo_inputs(2)
    log_probs[:, 0] += 0.3  # off-policy, so the two ratios differ
    sequence_level = kl_penalty(log_probs, ref) * sequence_importance_ratio(log_probs, old, mask).unsqueeze(-1)
    names = {"per_token_logps": log_probs, "old_per_token_logps": old, "ref_per_token_logps": ref, "mask": mask,
             "self": SimpleNamespace(importance_sampling_level="sequence",
                                     args=SimpleNamespace(use_bias_correction_kl=True))}
    for quoted in (TRL_GRPO_WEIGHTS, TRL_GRPO_RATIO, TRL_GRPO_KL):
        run_quoted(GRPO_MODULE, quoted, names)
    torch.testing.assert_close(sequence_level, names["per_token_kl"])
    token_level = kl_penalty(log_probs, ref) * torch.exp(log_probs - old)
    assert not torch.allclose(token_level, names["per_token_kl"])


def test_dapo_with_every_token_masked_and_a_count_of_zero_gives_trl_s_zero():
    # mask_truncated_completions can mask a whole generation batch; TRL clamps the count to 1, so the loss is 0.
    log_probs, old, ref, advantages, mask = grpo_inputs(4)
    nothing = torch.zeros_like(mask)
    assert_same_value_and_gradient(
        lambda lp: coursekit_grpo_loss(lp, old, ref, advantages, nothing, loss_type="dapo",
                                       num_items_in_batch=torch.tensor(0)),
        lambda lp: trl_grpo_loss(lp, old, ref, advantages, nothing, loss_type="dapo",
                                 num_items_in_batch=torch.tensor(0)),
        [log_probs],
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_k3_and_clipping_equal_trl_per_token(seed):
    log_probs, old, ref, advantages, mask = grpo_inputs(seed)
    kl = run_quoted(GRPO_MODULE, TRL_GRPO_KL, {
        "per_token_logps": log_probs, "ref_per_token_logps": ref, "coef_1": None,
        "self": SimpleNamespace(args=SimpleNamespace(use_bias_correction_kl=False)),
    })
    torch.testing.assert_close(kl_penalty(log_probs, ref), kl["per_token_kl"])
    names = {
        "log_importance_weights": log_probs - old, "advantages": advantages.unsqueeze(1),
        "self": SimpleNamespace(epsilon_low=0.2, epsilon_high=0.28, args=SimpleNamespace(delta=None)),
    }
    for quoted in (TRL_GRPO_RATIO, TRL_GRPO_CLIP):
        run_quoted(GRPO_MODULE, quoted, names)
    torch.testing.assert_close(clipped_surrogate(log_probs, old, advantages, eps_high=0.28), names["per_token_loss"])


def test_grpo_with_an_empty_response_differs_from_trl_by_the_documented_factor():
    log_probs, old, ref, advantages, mask = grpo_inputs(5)
    mask[2] = 0  # mask_truncated_completions empties a response
    ours = coursekit_grpo_loss(log_probs, old, ref, advantages, mask, loss_type="grpo")
    theirs = trl_grpo_loss(log_probs, old, ref, advantages, mask, loss_type="grpo")
    groups, nonempty = mask.shape[0], int((mask.sum(-1) > 0).sum())
    torch.testing.assert_close(ours * nonempty / groups, theirs)


def trl_aggregation(per_token_loss: torch.Tensor, mask: torch.Tensor, loss_type: str, num_items_in_batch=None):
    """TRL's aggregation line for ``loss_type`` (quoted above), run on given per-token losses."""
    names = {
        "per_token_loss": per_token_loss, "mask": mask, "inputs": {"num_items_in_batch": num_items_in_batch},
        "mode": "train",
        "self": SimpleNamespace(accelerator=SimpleNamespace(num_processes=1), current_gradient_accumulation_steps=4,
                                args=SimpleNamespace(steps_per_generation=4)),
    }
    return run_quoted(GRPO_MODULE, TRL_GRPO_AGGREGATION[loss_type], names)["loss"]


def half_precision_responses(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token losses N(0, 0.05) in ``dtype`` and TRL's integer mask: 16 x 4403 tokens with 68201 counted in
    float16 (15 rows of 4400 and one of 2201: more than float16 can count), 4 x 304 with 301 counted per response in bfloat16 (which rounds 301
    to 300); some responses shorter, none empty."""
    groups, time = (16, 4403) if dtype is torch.float16 else (4, 304)
    losses = (0.05 * torch.randn(groups, time, generator=generator(7))).to(dtype)
    mask = torch.ones(groups, time, dtype=torch.long)
    mask[:, -3:] = 0
    mask[1, time // 2:] = 0
    return losses, mask


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_aggregation_equals_trl_in_value_dtype_and_gradient(dtype, loss_type):
    # TRL's counts mask.sum(...).clamp(min=1.0) are float32, so its loss is float32 and counts every token;
    # counting in the losses' dtype gave 0 with no gradient in float16 and a rounded count in bfloat16.
    losses, mask = half_precision_responses(dtype)
    num_items = mask.sum() if loss_type == "dapo" else None
    assert_same_value_and_gradient(
        lambda x: policy_loss_aggregate(x, mask, mode=loss_type, num_items_in_batch=num_items),
        lambda x: trl_aggregation(x, mask, loss_type, num_items),
        [losses],
    )
    assert policy_loss_aggregate(losses, mask, mode=loss_type).dtype == torch.float32


# --- fairseq: label_smoothed_nll_loss (formula; fairseq cannot be installed here) ---------------------


def fairseq_label_smoothed_nll_sum(log_probs, targets, epsilon, ignore_index, *, since_v0_12=True):
    """fairseq's ``label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index, reduce=True)``, as a formula.

    fairseq/criterions/label_smoothed_cross_entropy.py: nll = -lprobs[target], smooth = -sum(lprobs), both 0
    at ignore_index and summed; then loss = (1 - eps - eps_i) * nll + eps_i * smooth with
    eps_i = eps / (V - 1) since commit 791ab7c2 (PR #3182, first in v0.12.0, lines 48-49 there);
    up to v0.10.2, loss = (1 - eps) * nll + eps_i * smooth with eps_i = eps / V.
    """
    vocab = log_probs.shape[-1]
    kept = targets != ignore_index
    nll = -(log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * kept).sum()
    smooth = -(log_probs.sum(-1) * kept).sum()
    if since_v0_12:
        share = epsilon / (vocab - 1)
        return (1 - epsilon - share) * nll + share * smooth
    return (1 - epsilon) * nll + epsilon / vocab * smooth


@pytest.mark.parametrize("since_v0_12", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_label_smoothed_nll_sum_equals_fairseq_formula(seed, since_v0_12):
    logits, ids, scored, _ = causal_batch(seed)
    targets = ids.masked_fill(~scored, IGNORE_INDEX)
    variant = "fairseq" if since_v0_12 else "pytorch"
    assert_same_value_and_gradient(
        lambda z: label_smoothed_nll(z, targets, 0.1, reduction="sum", variant=variant),
        lambda z: fairseq_label_smoothed_nll_sum(z.log_softmax(-1), targets, 0.1, IGNORE_INDEX,
                                                 since_v0_12=since_v0_12),
        [logits],
    )
