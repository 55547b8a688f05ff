"""coursekit.train: accumulation normalises by total tokens, clipping, seeds, objectives, progress bar."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from coursekit.data import EOS_ID, lm_batch, seq2seq_batch
from coursekit.losses import dpo_loss, generalized_jsd, simpo_loss
from coursekit.models import RNNLM, Seq2Seq, sequence_kd_pairs, teacher_student_divergence
from coursekit.train import (
    Objective,
    label_smoothing_objective,
    lm_objective,
    mrt_objective,
    on_policy_kd_objective,
    progress_enabled,
    reinforce_objective,
    seeded,
    preference_objective,
    sample_group,
    token_log_probs,
    train,
    word_kd_objective,
    z_loss_objective,
)

pytestmark = [pytest.mark.models, pytest.mark.usefixtures("one_thread")]


class Scale(nn.Module):
    """loss = w * (fixed token losses): the gradient w.r.t. w is the normalised loss itself."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))


def fixed_losses_objective(model: Scale, losses: list[float]) -> Objective:
    return Objective(model.w * torch.tensor(losses).sum(), float(len(losses)))


def test_accumulation_divides_by_total_tokens_not_by_number_of_micro_batches():
    # the example: [2, 2] and eight 1s -> 12 / 10 = 1.2, not (2 + 1) / 2 = 1.5
    model = Scale()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    history = train(model, [[2.0, 2.0], [1.0] * 8], fixed_losses_objective, optimizer=optimizer,
                    accumulation_steps=2, clip_norm=None)
    assert history.step_loss == [pytest.approx(1.2)]
    assert history.step_count == [10.0]
    assert history.grad_norm == [pytest.approx(1.2)]
    assert float(model.w.detach()) == pytest.approx(1.0 - 1.2)


def test_accumulated_micro_batches_give_the_full_batch_gradient():
    sentences = [[4, 5, 6, 7, 4, 5], [4], [6, 7], [5, 5, 5, 6]]
    with seeded(0):
        base = RNNLM(8, embed_dim=4, hidden_size=6)
    full, micro = copy.deepcopy(base), copy.deepcopy(base)
    train(full, [lm_batch(sentences)], lm_objective(), optimizer=torch.optim.SGD(full.parameters(), lr=0.5),
          clip_norm=None)
    train(micro, [lm_batch(sentences[:1]), lm_batch(sentences[1:3]), lm_batch(sentences[3:])], lm_objective(),
          optimizer=torch.optim.SGD(micro.parameters(), lr=0.5), accumulation_steps=3, clip_norm=None)
    for a, b in zip(full.parameters(), micro.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.equal(next(full.parameters()), next(base.parameters()))


def test_last_partial_accumulation_group_still_steps():
    model = Scale()
    history = train(model, [[1.0], [2.0], [3.0]], fixed_losses_objective, accumulation_steps=2,
                    optimizer=torch.optim.SGD(model.parameters(), lr=0.0))
    assert history.step_count == [2.0, 1.0]
    assert history.step_loss == [pytest.approx(1.5), pytest.approx(3.0)]


def test_clipping_bounds_the_update():
    model = Scale()
    history = train(model, [[100.0]], fixed_losses_objective, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                    clip_norm=0.5)
    assert history.grad_norm == [pytest.approx(100.0)]
    assert float(model.w.detach()) == pytest.approx(0.5)


def test_same_seed_same_history_to_the_last_bit_with_dropout():
    data = [lm_batch([[4, 5, 6], [7, 4]]), lm_batch([[5, 5], [6, 7, 4, 4]])]

    def run(seed: int) -> list[float]:
        with seeded(seed):
            model = RNNLM(8, embed_dim=4, hidden_size=6, dropout=0.3)
        return train(model, data, lm_objective(), epochs=3, seed=seed).step_loss

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_seeded_training_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(Scale(), [[1.0]], fixed_losses_objective, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_evaluate_callback_and_epoch_history():
    calls = []
    model = Scale()
    history = train(model, lambda epoch: [[float(epoch + 1)]], fixed_losses_objective, epochs=3,
                    optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                    evaluate=lambda m: calls.append(m.training) or 0.5)
    assert history.epoch_loss == [1.0, 2.0, 3.0]
    assert history.valid == [0.5, 0.5, 0.5] and calls == [False, False, False]
    assert history.seconds > 0 and set(history.to_dict()) >= {"step_loss", "epoch_loss", "valid"}


def translation_batches() -> list:
    pairs = [([4, 5], [4, 5]), ([6], [6]), ([7, 8, 9], [7, 4]), ([5, 6], [5, 6, 7])]
    return [seq2seq_batch(pairs)]


def small_seq2seq(seed: int = 0) -> Seq2Seq:
    with seeded(seed):
        return Seq2Seq(10, 9, embed_dim=6, hidden_size=12)


def nll(model: Seq2Seq) -> float:
    out = lm_objective()(model.eval(), translation_batches()[0])
    return float(out.loss_sum.detach()) / out.count


def expected_reward(model: Seq2Seq) -> float:
    """Monte-Carlo estimate of P(exact match) under the model's own samples."""
    batch = translation_batches()[0]
    result = model.sample(batch.src, batch.src_lengths, num_samples=200, max_len=5, seed=1)
    refs = [batch.tgt_out[i, : int(batch.tgt_lengths[i])].tolist() for i in range(batch.src.shape[0])]
    hits = sum(seq == refs[i] for i, outputs in enumerate(result.sequences) for seq in outputs)
    return hits / (200 * len(refs))


@pytest.mark.parametrize("name", ["nll", "label_smoothing", "word_kd"])
def test_token_level_objectives_plug_in_and_lower_the_nll(name):
    if name == "nll":
        objective = lm_objective()
    elif name == "label_smoothing":
        objective = label_smoothing_objective(0.1)
    else:
        teacher = small_seq2seq(7)
        train(teacher, translation_batches(), lm_objective(), epochs=30, lr=0.03)
        objective = word_kd_objective(teacher, temperature=2.0, alpha=0.5)
    model = small_seq2seq()
    before = nll(model)
    history = train(model, translation_batches(), objective, epochs=20, lr=0.03, seed=0)
    assert all(torch.isfinite(torch.tensor(history.step_loss)))
    assert nll(model) < 0.5 * before


@pytest.mark.parametrize("name", ["mrt", "reinforce"])
def test_sequence_level_objectives_plug_in_and_raise_the_expected_reward(name):
    if name == "mrt":
        objective = mrt_objective(lambda hyp, ref: float(hyp != ref), num_samples=8, max_len=5, seed=0)
    else:
        objective = reinforce_objective(lambda hyp, ref: float(hyp == ref), num_samples=8, max_len=5, seed=0)
    model = small_seq2seq()
    train(model, translation_batches(), lm_objective(), epochs=10, lr=0.03)  # warm start: rewards must occur
    before = expected_reward(model)
    history = train(model, translation_batches(), objective, epochs=20, lr=0.01, seed=0)
    assert all(torch.isfinite(torch.tensor(history.step_loss)))
    assert history.step_count[0] == (4.0 if name == "mrt" else 32.0)
    assert expected_reward(model) > before + 0.1


def test_progress_bar_is_quiet_under_ci_and_off_a_terminal(monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    assert progress_enabled(None) is False
    assert progress_enabled(True) is True
    monkeypatch.delenv("CI")
    train(Scale(), [[1.0]] * 3, fixed_losses_objective, epochs=2)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"accumulation_steps": 0}, ValueError, "accumulation_steps"),
        ({"seed": -1}, ValueError, "seed"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"clip_norm": -1.0}, ValueError, "clip_norm"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, error, name):
    with pytest.raises(error, match=name):
        train(Scale(), [[1.0]], fixed_losses_objective, **kwargs)


def test_z_loss_objective_adds_the_weighted_squared_log_normaliser_of_counted_tokens_only():
    with seeded(0):
        model = RNNLM(vocab_size=9, embed_dim=8, hidden_size=8)
    batch = lm_batch([[4, 5, 6, 7], [8, 4]])
    plain = lm_objective()(model, batch)
    penalised = z_loss_objective(0.3)(model, batch)
    with torch.no_grad():
        logits, _ = model(batch.inputs)
    log_z = [[math.log(sum(math.exp(v) for v in row)) for row in seq] for seq in logits.double().tolist()]
    counted = batch.mask.tolist()
    expected_penalty = sum(lz**2 for seq, keep in zip(log_z, counted) for lz, k in zip(seq, keep) if k)
    assert penalised.count == plain.count
    assert float((penalised.loss_sum - plain.loss_sum).detach()) == pytest.approx(0.3 * expected_penalty, rel=1e-5)
    assert float(z_loss_objective(0.0)(model, batch).loss_sum.detach()) == pytest.approx(float(plain.loss_sum.detach()))


def test_z_loss_objective_keeps_the_normaliser_nearer_one_in_training():
    batches = [lm_batch([[4, 5, 6, 7, 8], [5, 6, 7, 8, 4], [6, 7, 8, 4, 5]])]

    def mean_abs_log_z(model: nn.Module) -> float:
        with torch.no_grad():
            logits, _ = model(batches[0].inputs)
        return float(torch.logsumexp(logits, dim=-1)[batches[0].mask].abs().mean())

    final = {}
    for weight in (0.0, 0.1):
        with seeded(0):
            model = RNNLM(vocab_size=9, embed_dim=8, hidden_size=16)
        train(model, batches, z_loss_objective(weight), epochs=60, lr=0.03, seed=0)
        final[weight] = mean_abs_log_z(model)
    assert final[0.1] < 0.5 * final[0.0]


def test_empty_epoch_and_zero_count_raise():
    with pytest.raises(ValueError, match="batches"):
        train(Scale(), [], fixed_losses_objective)
    with pytest.raises(ValueError, match="count"):
        train(Scale(), [[]], fixed_losses_objective)
    with pytest.raises(ValueError, match="alpha"):
        word_kd_objective(small_seq2seq(), alpha=1.5)
    with pytest.raises(ValueError, match="weight"):
        z_loss_objective(-1e-4)


@pytest.mark.parametrize(("alpha", "shown_as"),
                         [(-0.1, "-0.1"), (np.float32(-0.1), "-0.1"), (np.float32(1.1), "1.1"), (1.5, "1.5")], ids=repr)
def test_word_kd_alpha_outside_zero_one_has_one_range_message_showing_the_value_as_given(alpha, shown_as):
    # a negative alpha read "must be >= 0.0", one above 1 "must lie in [0, 1]", and np.float32(1.1) showed
    # its widened float 1.100000023841858
    with pytest.raises(ValueError, match=rf"^alpha must lie in \[0, 1\], got {re.escape(shown_as)}$"):
        word_kd_objective(small_seq2seq(), alpha=alpha)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [({"epsilon": 1.0}, ValueError, r"^epsilon must lie in \[0, 1\), got 1.0$"),
     ({"epsilon": 1.5}, ValueError, r"^epsilon must lie in \[0, 1\), got 1.5$"),
     ({"epsilon": -0.1}, ValueError, r"^epsilon must lie in \[0, 1\), got -0.1$"),
     ({"epsilon": float("nan")}, ValueError, r"^epsilon must be a finite number, got nan$"),
     ({"epsilon": "0.1"}, TypeError, r"^epsilon must be a real number in \[0, 1\) \(int, float or a NumPy real scalar\) or a 0-d real tensor, got str$"),
     ({"epsilon": 0.1, "variant": "bogus"}, ValueError,
      r"^variant must be one of 'pytorch', 'fairseq', got 'bogus'$")],
    ids=["eps-1", "eps-1.5", "eps-negative", "eps-nan", "eps-str", "variant-bogus"],
)
def test_label_smoothing_objective_checks_its_arguments_when_it_is_built(kwargs, error, message):
    # epsilon >= 1 and an unknown variant built an objective that raised only at its first call, in training
    with pytest.raises(error, match=message):
        label_smoothing_objective(**kwargs)


def test_label_smoothing_objective_takes_the_deprecated_variant_and_the_loss_warns_when_it_is_used():
    objective = label_smoothing_objective(0.1, variant="fairseq_legacy")
    with pytest.warns(FutureWarning, match=r"variant='fairseq_legacy'\) is deprecated"):
        legacy = objective(small_seq2seq(), translation_batches()[0])
    current = label_smoothing_objective(0.1, variant="fairseq")(small_seq2seq(), translation_batches()[0])
    assert torch.equal(legacy.loss_sum, current.loss_sum)


def test_on_policy_kd_scores_the_students_own_outputs_with_the_generalised_jsd():
    teacher, student = small_seq2seq(7), small_seq2seq(1)
    batch = translation_batches()[0]
    objective = on_policy_kd_objective(teacher, beta=0.3, temperature=1.5, sample=False, max_len=3)
    out = objective(student, batch)
    # independently: greedy outputs, teacher-forced, scored where they were generated
    outputs = student.eval().greedy(batch.src, batch.src_lengths, max_len=3).best()
    pairs = [(batch.src[b, : int(batch.src_lengths[b])].tolist(), [t for t in seq if t != EOS_ID])
             for b, seq in enumerate(outputs)]
    forced = seq2seq_batch(pairs)
    mask = forced.tgt_mask.clone()
    for b, seq in enumerate(outputs):
        if seq[-1] != EOS_ID:
            mask[b, int(forced.tgt_lengths[b]) - 1] = False
    expected = generalized_jsd(student(forced.src, forced.src_lengths, forced.tgt_in),
                               teacher(forced.src, forced.src_lengths, forced.tgt_in),
                               beta=0.3, temperature=1.5, mask=mask, reduction="sum")
    torch.testing.assert_close(out.loss_sum, expected)
    assert out.count == float(mask.sum())
    (grad,) = torch.autograd.grad(out.loss_sum, student.out.weight)
    assert float(grad.abs().sum()) > 0


def test_on_policy_kd_brings_the_student_closer_to_the_teacher_on_its_own_outputs():
    teacher = small_seq2seq(7)
    train(teacher, translation_batches(), lm_objective(), epochs=30, lr=0.03)
    student = small_seq2seq(1)
    sources = [[4, 5], [6], [7, 8, 9], [5, 6]]

    def gap() -> float:
        own = sequence_kd_pairs(student, sources, beam_size=1, max_len=5)
        return teacher_student_divergence(student, teacher, own)

    before = gap()
    history = train(student, translation_batches(), on_policy_kd_objective(teacher, beta=0.0, max_len=5, seed=0),
                    epochs=30, lr=0.03, seed=0)
    assert all(torch.isfinite(torch.tensor(history.step_loss)))
    assert gap() < 0.5 * before


def test_on_policy_kd_rejects_bad_arguments():
    teacher = small_seq2seq(7)
    with pytest.raises(ValueError, match="beta"):
        on_policy_kd_objective(teacher, beta=1.5)
    with pytest.raises(ValueError, match="max_len"):
        on_policy_kd_objective(teacher, max_len=0)
    with pytest.raises(TypeError, match="batch"):
        on_policy_kd_objective(teacher)(small_seq2seq(), lm_batch([[4, 5]]))


# --- preference optimisation and sampled groups ----------------------------------------------

def preference_pair_batch() -> tuple:
    sources = [[4, 5], [6], [7, 8, 9]]
    chosen = seq2seq_batch([(src, tgt) for src, tgt in zip(sources, [[4, 5], [6], [7, 4]])])
    rejected = seq2seq_batch([(src, tgt) for src, tgt in zip(sources, [[4, 6, 5], [5], [7]])])
    return chosen, rejected


def summed_log_probs(model: Seq2Seq, batch) -> torch.Tensor:
    """log p(y | x) per row, from the log-softmax of the teacher-forced logits (independent of the library)."""
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    picked = torch.log_softmax(logits, dim=-1).gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)
    return (picked * batch.tgt_mask).sum(dim=1)


def test_dpo_objective_is_dpo_loss_of_the_summed_log_probabilities_per_pair():
    policy, reference = small_seq2seq(0), small_seq2seq(1)
    chosen, rejected = preference_pair_batch()
    log: list = []
    out = preference_objective(reference, loss="dpo", beta=0.3, log=log)(policy, (chosen, rejected))
    with torch.no_grad():
        expected = dpo_loss(summed_log_probs(policy, chosen), summed_log_probs(policy, rejected),
                            summed_log_probs(reference, chosen), summed_log_probs(reference, rejected),
                            beta=0.3, reduction="sum")
    assert out.count == 3.0
    assert float(out.loss_sum.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert set(log[0]) == {"chosen", "rejected", "margin", "accuracy", "loss"}
    assert log[0]["margin"] == pytest.approx(log[0]["chosen"] - log[0]["rejected"], abs=1e-6)
    assert log[0]["loss"] == pytest.approx(float(expected) / 3, rel=1e-5)


def test_simpo_objective_divides_by_the_lengths_with_eos_and_uses_no_reference():
    policy = small_seq2seq(0)
    chosen, rejected = preference_pair_batch()
    out = preference_objective(None, loss="simpo", beta=2.0, gamma=0.5)(policy, (chosen, rejected))
    with torch.no_grad():
        expected = simpo_loss(summed_log_probs(policy, chosen), summed_log_probs(policy, rejected),
                              torch.tensor([3, 2, 3]), torch.tensor([4, 2, 2]), beta=2.0, gamma=0.5,
                              reduction="sum")
    assert float(out.loss_sum.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_dpo_training_ranks_the_chosen_responses_above_the_rejected_ones():
    reference = small_seq2seq(0)
    train(reference, translation_batches(), lm_objective(), epochs=5, lr=0.03)
    policy = copy.deepcopy(reference)
    log: list = []
    train(policy, [preference_pair_batch()], preference_objective(reference, beta=0.5, log=log), epochs=30, lr=0.01)
    assert log[0]["accuracy"] == 0.0 and log[0]["margin"] == pytest.approx(0.0, abs=1e-6)
    assert log[-1]["accuracy"] == 1.0 and log[-1]["margin"] > 0 and log[-1]["loss"] < log[0]["loss"]


@pytest.mark.parametrize(
    ("reference", "kwargs", "message"),
    [(None, {"loss": "dpo"}, "needs the frozen reference"), ("model", {"loss": "simpo"}, "uses no reference"),
     ("model", {"loss": "ipo"}, "loss"), ("model", {"beta": 0.0}, "beta")],
)
def test_preference_objective_rejects_bad_arguments(reference, kwargs, message):
    with pytest.raises(ValueError, match=message):
        preference_objective(small_seq2seq() if reference == "model" else None, **kwargs)


def test_sampled_groups_are_reproducible_and_token_log_probs_add_up_to_the_sequence_log_prob():
    model = small_seq2seq(0)
    batch = translation_batches()[0]
    group = sample_group(model, batch, group_size=5, max_len=3, seed=4)
    again = sample_group(model, batch, group_size=5, max_len=3, seed=4)
    assert group.responses == again.responses and len(group.responses) == 4 * 5
    assert torch.equal(group.batch.src[:5], batch.src[:1].expand(5, -1))
    per_token = token_log_probs(model, group)
    assert bool((per_token[~group.mask] == 0).all()) and bool((per_token[group.mask] < 0).all())
    expected = model.sequence_log_probs(group.batch.src, group.batch.src_lengths, group.batch.tgt_in,
                                        group.batch.tgt_out, group.mask)
    assert torch.allclose(per_token.sum(dim=1), expected, atol=1e-5)
    cut = [i for i, r in enumerate(group.responses) if len(r) == 3 and not group.mask[i, 3:].any()]
    assert cut, "the tiny model should produce responses cut at max_len"
    for row in cut:  # a response cut at max_len has no <eos> to score
        assert int(group.mask[row].sum()) == len(group.responses[row])
    with pytest.raises(ValueError, match="group_size"):
        sample_group(model, batch, group_size=0)
