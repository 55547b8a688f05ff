"""coursekit.models.rnn: shapes, carried state (truncated BPTT), training, determinism."""

from __future__ import annotations

import pytest
import torch

from coursekit.data import lm_batch, tbptt_chunks, token_stream
from coursekit.models import RNNLM, detach_hidden
from coursekit.train import TBPTTObjective, lm_objective, seeded, train

pytestmark = [pytest.mark.models, pytest.mark.a3, pytest.mark.usefixtures("one_thread")]


SENTENCES = [[4, 5, 6, 7], [4, 6], [5, 5, 7], [7, 6, 5, 4, 4]]


def small(cell: str, seed: int = 0) -> RNNLM:
    with seeded(seed):
        return RNNLM(vocab_size=8, embed_dim=6, hidden_size=10, num_layers=2, cell=cell)


@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_shapes_of_logits_and_hidden(cell):
    logits, hidden = small(cell)(torch.tensor([[1, 4, 5], [1, 6, 0]]))
    assert logits.shape == (2, 3, 8)
    states = hidden if isinstance(hidden, tuple) else (hidden,)
    assert all(h.shape == (2, 2, 10) for h in states)
    assert len(states) == (2 if cell == "lstm" else 1)


@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_carrying_the_hidden_state_equals_one_long_pass(cell):
    model = small(cell).eval()
    tokens = torch.tensor([[1, 4, 5, 6, 7, 4, 5]])
    whole, _ = model(tokens)
    first, hidden = model(tokens[:, :3])
    second, _ = model(tokens[:, 3:], detach_hidden(hidden))
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=0, atol=1e-6)


def test_detach_hidden_cuts_the_graph_but_keeps_values():
    model = small("lstm")
    _, (h, c) = model(torch.tensor([[1, 4]]))
    dh, dc = detach_hidden((h, c))
    assert h.requires_grad and not dh.requires_grad and torch.equal(dh, h)
    assert detach_hidden(None) is None


@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_a_few_steps_reduce_the_loss(cell):
    model = small(cell)
    history = train(model, [lm_batch(SENTENCES)], lm_objective(), epochs=20, lr=0.03, seed=0)
    assert history.epoch_loss[-1] < 0.7 * history.epoch_loss[0]


def test_truncated_bptt_training_reduces_the_loss_and_carries_state():
    model = small("gru")
    chunks = tbptt_chunks(token_stream(SENTENCES * 2, 2), 5)
    objective = TBPTTObjective()
    history = train(model, chunks, objective, epochs=6, lr=0.03, seed=0)
    assert history.epoch_loss[-1] < 0.8 * history.epoch_loss[0]
    assert objective.hidden is not None
    objective.reset()
    assert objective.hidden is None
    assert len(history.step_loss) == 6 * len(chunks)


def test_truncated_bptt_gradient_stops_at_the_chunk_boundary():
    model = small("gru")
    objective = TBPTTObjective()
    first = (torch.tensor([[4, 4, 4]]), torch.tensor([[4, 4, 5]]))
    second = (torch.tensor([[5, 6, 7]]), torch.tensor([[6, 7, 5]]))
    objective(model, first)
    carried = objective.hidden
    objective(model, second).loss_sum.backward()
    # token 4 appears only in the first chunk: with the state detached, no gradient reaches its embedding
    assert float(model.embed.weight.grad[4].abs().sum()) == 0.0
    assert float(model.embed.weight.grad[5].abs().sum()) > 0.0
    assert carried is not None


def test_same_seed_same_losses_to_the_last_bit():
    runs = []
    for _ in range(2):
        model = small("lstm", seed=3)
        runs.append(train(model, [lm_batch(SENTENCES)], lm_objective(), epochs=4, lr=0.01, seed=3).step_loss)
    assert runs[0] == runs[1]
    other = train(small("lstm", seed=4), [lm_batch(SENTENCES)], lm_objective(), epochs=4, lr=0.01, seed=4)
    assert other.step_loss != runs[0]


@pytest.mark.parametrize(
    ("inputs", "error", "name"),
    [
        (torch.tensor([[1, 9]]), ValueError, "input_ids"),
        (torch.tensor([[1, -1]]), ValueError, "input_ids"),
        (torch.zeros(0, 3, dtype=torch.long), ValueError, "input_ids"),
        (torch.zeros(2, 0, dtype=torch.long), ValueError, "input_ids"),
        (torch.tensor([[1.0, 2.0]]), TypeError, "input_ids"),
    ],
)
def test_bad_inputs_raise_naming_them(inputs, error, name):
    with pytest.raises(error, match=name):
        small("gru")(inputs)


def test_bad_constructor_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="cell"):
        RNNLM(8, cell="transformer")
    with pytest.raises(ValueError, match="hidden_size"):
        RNNLM(8, hidden_size=0)
