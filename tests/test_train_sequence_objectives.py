"""coursekit.train: scheduled sampling, the leave-one-out REINFORCE baseline and the CTC objective."""

from __future__ import annotations

import math

import pytest
import torch

from coursekit.data import EOS_ID, frame_batch, frame_task
from coursekit.losses import ctc_loss, leave_one_out_baseline, reinforce_loss
from coursekit.models import CTCRecognizer
from coursekit.train import (
    ScheduledSamplingObjective,
    ctc_objective,
    inverse_sigmoid_schedule,
    lm_objective,
    reinforce_objective,
    seeded,
    train,
)
from tests.test_train import small_seq2seq, translation_batches

pytestmark = [pytest.mark.models, pytest.mark.usefixtures("one_thread")]


def translation_batch():
    (batch,) = translation_batches()
    return batch


def test_the_inverse_sigmoid_schedule_falls_from_near_one_through_one_half_at_k_ln_k() -> None:
    schedule = inverse_sigmoid_schedule(20.0)
    values = [schedule(i) for i in range(0, 400, 5)]
    assert all(b < a for a, b in zip(values, values[1:]))
    assert schedule(0) == pytest.approx(20 / 21)
    assert schedule(round(20 * math.log(20))) == pytest.approx(0.5, abs=0.01)
    assert inverse_sigmoid_schedule(1.0)(10**6) == 0.0
    with pytest.raises(ValueError, match="k must be >= 1.0"):
        inverse_sigmoid_schedule(0.5)


def test_reading_only_the_reference_is_teacher_forcing() -> None:
    model, batch = small_seq2seq().eval(), translation_batch()
    scheduled = ScheduledSamplingObjective(1.0, seed=3)(model, batch)
    forced = lm_objective()(model, batch)
    torch.testing.assert_close(scheduled.loss_sum, forced.loss_sum)
    assert scheduled.count == forced.count


def test_reading_only_own_samples_feeds_back_what_the_model_drew() -> None:
    model, batch = small_seq2seq().eval(), translation_batch()
    logits = model.forward_scheduled(batch.src, batch.src_lengths, batch.tgt_in, teacher_prob=0.0,
                                     generator=torch.Generator().manual_seed(5))
    # replay: the same generator draws, at every step, first the samples and then the coin flips
    replay = torch.Generator().manual_seed(5)
    memory, src_mask, state = model.encode(batch.src, batch.src_lengths)
    prev = batch.tgt_in[:, 0]
    for t in range(batch.tgt_in.shape[1]):
        step_logits, state = model.step(prev, state, memory, src_mask)
        torch.testing.assert_close(logits[:, t], step_logits)
        prev = torch.multinomial(torch.softmax(step_logits, -1), 1, generator=replay)[:, 0]
        torch.rand(prev.shape, generator=replay)
    assert not torch.equal(logits, model(batch.src, batch.src_lengths, batch.tgt_in))


def test_the_objective_follows_its_schedule_call_by_call_and_trains() -> None:
    objective = ScheduledSamplingObjective(inverse_sigmoid_schedule(4.0), seed=0)
    model = small_seq2seq()
    before = float(lm_objective()(model.eval(), translation_batch()).loss_sum.detach())
    train(model, [translation_batch()], objective, epochs=30, lr=0.03, seed=0)
    assert objective.teacher_probs == [inverse_sigmoid_schedule(4.0)(i) for i in range(30)]
    assert float(lm_objective()(model.eval(), translation_batch()).loss_sum.detach()) < 0.5 * before


def test_teacher_prob_outside_zero_one_is_rejected() -> None:
    model, batch = small_seq2seq(), translation_batch()
    with pytest.raises(ValueError, match=r"teacher_prob must lie in \[0, 1\], got 1.5"):
        model.forward_scheduled(batch.src, batch.src_lengths, batch.tgt_in, teacher_prob=1.5,
                                generator=torch.Generator())
    with pytest.raises(ValueError, match="schedule must be >= 0.0"):
        ScheduledSamplingObjective(-0.1)


def test_the_leave_one_out_option_subtracts_each_samples_own_baseline() -> None:
    model, batch = small_seq2seq().eval(), translation_batch()
    reward = lambda hyp, ref: float(len(set(hyp) & set(ref)))  # noqa: E731  (a reward with several values)
    ours = reinforce_objective(reward, num_samples=3, max_len=5, seed=2, baseline="leave_one_out")(model, batch)
    # the same samples, drawn again from the same seed, and the loss by hand
    result = model.sample(batch.src, batch.src_lengths, num_samples=3, max_len=5, seed=2)
    flat = [seq for outputs in result.sequences for seq in outputs]
    refs = [batch.tgt_out[i, : int(batch.tgt_lengths[i]) - 1].tolist() for i in range(4)]
    rewards = torch.tensor([reward([t for t in seq if t != EOS_ID], refs[i // 3]) for i, seq in enumerate(flat)])
    log_probs = result.log_probs.flatten().to(torch.float32)
    baseline = leave_one_out_baseline(rewards.view(4, 3)).flatten()
    expected = reinforce_loss(log_probs, rewards, baseline=baseline) * 12
    torch.testing.assert_close(ours.loss_sum.detach(), expected, rtol=1e-4, atol=1e-5)
    assert ours.count == 12.0


def test_the_leave_one_out_option_needs_two_samples_and_a_known_name() -> None:
    with pytest.raises(ValueError, match="num_samples must be >= 2 for the leave-one-out baseline"):
        reinforce_objective(lambda h, r: 0.0, num_samples=1, baseline="leave_one_out")
    with pytest.raises(ValueError, match="baseline must be one of"):
        reinforce_objective(lambda h, r: 0.0, baseline="median")


def test_the_ctc_objective_sums_the_utterance_losses_and_counts_labels() -> None:
    task = frame_task(seed=0, num_train=6, num_valid=1, num_test=1)
    batch = frame_batch(task.train)
    with seeded(0):
        model = CTCRecognizer(task.feature_dim, task.num_classes, hidden_size=6)
    out = ctc_objective()(model, batch)
    log_probs = model(batch.features, batch.input_lengths).transpose(0, 1)
    expected = ctc_loss(log_probs, batch.targets, batch.input_lengths, batch.target_lengths, reduction="sum")
    torch.testing.assert_close(out.loss_sum, expected)
    assert out.count == float(sum(len(e.labels) for e in task.train))
