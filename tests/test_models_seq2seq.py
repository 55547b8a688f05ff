"""coursekit.models.seq2seq: decoders return sequences and exact log-probabilities; beam k=1 is greedy."""

from __future__ import annotations

import pytest
import torch

from coursekit.data import EOS_ID, pad_batch, seq2seq_batch
from coursekit.losses import sequence_loss, token_nll
from coursekit.models import Seq2Seq, load_checkpoint, shipped_checkpoint
from coursekit.recipes import translation_data
from coursekit.train import lm_objective, seeded, train

pytestmark = [pytest.mark.models, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def teacher() -> Seq2Seq:
    model, _ = load_checkpoint(shipped_checkpoint("translator_teacher"))
    return model


@pytest.fixture(scope="module")
def sources() -> tuple[torch.Tensor, torch.Tensor]:
    data = translation_data(0)
    texts = [s for s, _ in data.task.test[:12]] + [s for s, _ in data.task.ood[:4]]
    batch = pad_batch([data.src_vocab.encode(t) for t in texts])
    return batch.tokens, batch.lengths


def random_model(seed: int = 0) -> Seq2Seq:
    with seeded(seed):
        return Seq2Seq(10, 7, embed_dim=6, hidden_size=8).eval()


RANDOM_SRC = (torch.tensor([[4, 5, 6, 7], [8, 9, 0, 0], [5, 0, 0, 0]]), torch.tensor([4, 2, 1]))


def teacher_forced_log_probs(model: Seq2Seq, src, src_lengths, outputs: list[list[int]]) -> torch.Tensor:
    """-sequence_loss(token_nll(...), reduction="sum") of each output, <eos> scored only where generated."""
    pairs = [(src[b, : int(src_lengths[b])].tolist(), seq[:-1] if seq[-1:] == [EOS_ID] else seq)
             for b, seq in enumerate(outputs)]
    batch = seq2seq_batch(pairs)
    mask = batch.tgt_mask.clone()
    for b, seq in enumerate(outputs):
        if seq[-1:] != [EOS_ID]:
            mask[b, len(seq)] = False
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    return -sequence_loss(token_nll(logits, batch.tgt_out), mask, reduction="sum")


def test_teacher_forced_logits_shape():
    model = random_model()
    logits = model(*RANDOM_SRC, torch.tensor([[1, 4], [1, 5], [1, 6]]))
    assert logits.shape == (3, 2, 7)


@pytest.mark.parametrize("which", ["teacher", "random"])
def test_beam_of_width_one_equals_greedy(which, teacher, sources):
    model, (src, lengths) = (teacher, sources) if which == "teacher" else (random_model(1), RANDOM_SRC)
    greedy = model.greedy(src, lengths, max_len=8)
    beam = model.beam_search(src, lengths, beam_size=1, max_len=8)
    assert beam.sequences == greedy.sequences
    torch.testing.assert_close(beam.log_probs, greedy.log_probs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("decoder", ["greedy", "beam", "beam_normalised", "sample"])
@pytest.mark.parametrize("which", ["teacher", "random"])
def test_decoded_log_probs_equal_teacher_forced_sequence_loss(decoder, which, teacher, sources):
    model, (src, lengths) = (teacher, sources) if which == "teacher" else (random_model(2), RANDOM_SRC)
    if decoder == "greedy":
        result = model.greedy(src, lengths, max_len=6)
    elif decoder == "beam":
        result = model.beam_search(src, lengths, beam_size=3, max_len=6)
    elif decoder == "beam_normalised":
        result = model.beam_search(src, lengths, beam_size=3, max_len=6, length_penalty=1.0)
    else:
        result = model.sample(src, lengths, num_samples=1, max_len=6, seed=0)
    expected = teacher_forced_log_probs(model, src, lengths, result.best())
    torch.testing.assert_close(result.log_probs[:, 0], expected, rtol=0, atol=1e-4)


def test_trained_teacher_translates_and_ends_with_eos(teacher, sources):
    data = translation_data(0)
    result = teacher.greedy(*sources, max_len=8)
    assert all(seq[-1] == EOS_ID for seq in result.best())
    decoded = [data.tgt_vocab.decode(seq) for seq in result.best()[:12]]
    assert sum(d == r for d, (_, r) in zip(decoded, data.task.test[:12])) >= 11


def test_beam_returns_ranked_n_best_with_scores(teacher, sources):
    src, lengths = sources
    result = teacher.beam_search(src[:3], lengths[:3], beam_size=4, num_return=3, length_penalty=0.5)
    assert result.log_probs.shape == (3, 3) and len(result.sequences[0]) == 3
    assert bool((result.scores[:, :-1] >= result.scores[:, 1:]).all())
    for b in range(3):
        lengths_b = torch.tensor([len(s) for s in result.sequences[b]], dtype=torch.float32)
        torch.testing.assert_close(result.scores[b], result.log_probs[b] / lengths_b ** 0.5)


def test_sampling_is_reproducible_from_its_seed():
    model = random_model(3)
    a = model.sample(*RANDOM_SRC, num_samples=5, max_len=6, seed=11)
    b = model.sample(*RANDOM_SRC, num_samples=5, max_len=6, generator=torch.Generator().manual_seed(11))
    c = model.sample(*RANDOM_SRC, num_samples=5, max_len=6, seed=12)
    assert a.sequences == b.sequences and torch.equal(a.log_probs, b.log_probs)
    assert a.log_probs.shape == (3, 5) and a.sequences != c.sequences


def test_a_few_steps_reduce_the_loss():
    model = random_model(4)
    data = [seq2seq_batch([([4, 5], [4]), ([6], [5, 6]), ([7, 8, 9], [6, 4, 5])])]
    history = train(model, data, lm_objective(), epochs=25, lr=0.03, seed=0)
    assert history.epoch_loss[-1] < 0.5 * history.epoch_loss[0]


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda m: m.greedy(*RANDOM_SRC, max_len=0), "max_len"),
        (lambda m: m.greedy(RANDOM_SRC[0], torch.tensor([4, 2, 0])), "src_lengths"),
        (lambda m: m.greedy(RANDOM_SRC[0], torch.tensor([4, 2])), "src_lengths"),
        (lambda m: m.greedy(torch.tensor([[4, 99]]), torch.tensor([2])), "src"),
        (lambda m: m.beam_search(*RANDOM_SRC, beam_size=0), "beam_size"),
        (lambda m: m.beam_search(*RANDOM_SRC, beam_size=2, num_return=3), "num_return"),
        (lambda m: m.beam_search(*RANDOM_SRC, length_penalty=-1.0), "length_penalty"),
        (lambda m: m.sample(*RANDOM_SRC, temperature=0.0, seed=0), "temperature"),
        (lambda m: m.sample(*RANDOM_SRC), "seed"),
        (lambda m: m.sample(*RANDOM_SRC, seed=-3), "seed"),
        (lambda m: Seq2Seq(10, 7, hidden_size=7), "hidden_size"),
    ],
)
def test_bad_arguments_raise_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call(random_model())
