"""coursekit.recipes: the training runs the book calls, and the models benchmark's smoke run."""

from __future__ import annotations

import pytest
import torch

from coursekit import recipes
from coursekit.models import RNNLM, Seq2Seq, TransformerLM

pytestmark = [pytest.mark.models, pytest.mark.usefixtures("one_thread")]


def test_lm_data_is_encoded_without_unknown_tokens_and_knows_its_floor():
    data = recipes.lm_data(0)
    assert all(3 not in s for s in data.train + data.valid)
    assert data.entropy == pytest.approx(data.corpus.language.entropy_per_token())
    assert data.vocab.decode(data.train[0]) == " ".join(data.corpus.train[0])


def test_one_epoch_rnn_recipe_beats_the_bigram_and_is_deterministic():
    model, history = recipes.train_rnn_lm(seed=0, epochs=1, progress=False)
    again, history_again = recipes.train_rnn_lm(seed=0, epochs=1, progress=False)
    assert isinstance(model, RNNLM) and len(history.valid) == 1
    assert history.step_loss == history_again.step_loss
    _, bigram = recipes.train_ngram_lm(order=2)
    assert history.valid[0] < bigram.nll


def test_one_epoch_transformer_recipe_learns():
    model, history = recipes.train_transformer_lm(seed=0, epochs=1, progress=False)
    assert isinstance(model, TransformerLM)
    assert history.valid[0] < 2.0 < history.step_loss[0]


def test_translator_and_seq_kd_recipes_run_and_use_teacher_outputs():
    teacher, history = recipes.train_translator(seed=0, epochs=1, progress=False)
    assert isinstance(teacher, Seq2Seq) and len(history.valid) == 1
    student, kd_history = recipes.train_seq_kd_student(teacher, seed=0, beam_size=1, epochs=1, progress=False)
    assert student.config["hidden_size"] < teacher.config["hidden_size"]
    assert kd_history.step_loss[0] > kd_history.step_loss[-1]


def test_translator_training_seed_can_vary_on_fixed_data():
    same, _ = recipes.train_translator(seed=0, data_seed=0, size="student", epochs=1, progress=False)
    default, _ = recipes.train_translator(seed=0, size="student", epochs=1, progress=False)
    other, _ = recipes.train_translator(seed=1, data_seed=0, size="student", epochs=1, progress=False)
    for a, b in zip(same.parameters(), default.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(same.out.weight, other.out.weight)
    data = recipes.translation_data(0)
    assert other.out.weight.shape[0] == len(data.tgt_vocab)


def test_noisy_targets_only_touch_the_training_split():
    clean, noisy = recipes.translation_data(0), recipes.translation_data(0, 0.3)
    changed = sum(a != b for a, b in zip(clean.task.train, noisy.task.train)) / len(clean.task.train)
    assert 0.25 < changed < 0.35
    assert clean.task.test == noisy.task.test and clean.task.ood == noisy.task.ood


@pytest.mark.slow
@pytest.mark.bench
def test_models_benchmark_tiny_run_writes_tables_and_plot(tmp_path):
    from bench.bench_models import run

    section = run(tiny=True, out_dir=tmp_path)
    assert "entropy floor" in section and "seq-KD" in section and section.count("| --- |") >= 3
    assert (tmp_path / "models.png").stat().st_size > 1000
