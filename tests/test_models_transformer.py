"""coursekit.models.transformer: shapes, causality, both position kinds, training."""

from __future__ import annotations

import pytest
import torch

from coursekit.data import lm_batch
from coursekit.models import TransformerLM, causal_mask, sinusoidal_positions
from coursekit.train import lm_objective, seeded, train

pytestmark = [pytest.mark.models, pytest.mark.usefixtures("one_thread")]


def small(positions: str = "learned", seed: int = 0) -> TransformerLM:
    with seeded(seed):
        return TransformerLM(vocab_size=9, d_model=16, num_heads=2, num_layers=2, d_ff=32, max_len=10,
                             positions=positions)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_logits_shape(positions):
    logits, state = small(positions)(torch.tensor([[1, 4, 5, 6], [1, 7, 0, 0]]))
    assert logits.shape == (2, 4, 9) and state is None


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_changing_a_future_token_leaves_earlier_logits_unchanged(positions):
    model = small(positions).eval()
    a = torch.tensor([[1, 4, 5, 6, 7]])
    b = a.clone()
    b[0, 3] = 8
    la, _ = model(a)
    lb, _ = model(b)
    torch.testing.assert_close(la[:, :3], lb[:, :3], rtol=0, atol=1e-6)
    assert not torch.allclose(la[:, 3:], lb[:, 3:])


def test_positions_matter():
    model = small("sinusoidal").eval()
    logits, _ = model(torch.tensor([[4, 4, 4]]))
    assert not torch.allclose(logits[0, 0], logits[0, 2])


def test_sinusoids_follow_the_formula():
    table = sinusoidal_positions(5, 6)
    p, i = 3, 1
    assert float(table[p, 2 * i]) == pytest.approx(torch.sin(torch.tensor(p / 10000 ** (2 * i / 6))).item())
    assert float(table[p, 2 * i + 1]) == pytest.approx(torch.cos(torch.tensor(p / 10000 ** (2 * i / 6))).item())
    assert causal_mask(2).tolist() == [[False, True], [False, False]]


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_a_few_steps_reduce_the_loss(positions):
    data = [lm_batch([[4, 5, 6, 7], [4, 6], [5, 5, 7], [7, 6, 5, 4, 4]])]
    history = train(small(positions), data, lm_objective(), epochs=12, lr=0.01, seed=0)
    assert history.epoch_loss[-1] < 0.7 * history.epoch_loss[0]


def test_same_seed_same_losses_to_the_last_bit():
    data = [lm_batch([[4, 5, 6], [7, 8]])]
    runs = [train(small(seed=1), data, lm_objective(), epochs=3, seed=1).step_loss for _ in range(2)]
    assert runs[0] == runs[1]


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="max_len"):
        small()(torch.ones(1, 11, dtype=torch.long))
    with pytest.raises(ValueError, match="num_heads"):
        TransformerLM(9, d_model=10, num_heads=3)
    with pytest.raises(ValueError, match="positions"):
        TransformerLM(9, positions="rotary")
    with pytest.raises(ValueError, match="input_ids"):
        small()(torch.tensor([[1, 9]]))
