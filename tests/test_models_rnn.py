"""coursekit.models.rnn: shapes, carried state (truncated BPTT), training, determinism."""

from __future__ import annotations

import pytest
import torch

from coursekit.data import EOS_ID, lm_batch, tbptt_chunks, tbptt_windows, token_stream
from coursekit.models import RNNLM, detach_hidden
from coursekit.train import TBPTTObjective, TBPTTWindowObjective, lm_objective, seeded, train

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


@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_reset_equals_reading_each_document_from_a_zero_state(cell):
    model = small(cell).eval()
    tokens = torch.tensor([[2, 4, 5, 2, 6, 7, 4, 2, 5], [4, 2, 6, 6, 6, 2, 7, 4, 4]])
    reset = tokens == 2
    logits, _ = model(tokens, reset=reset)
    for row in range(tokens.shape[0]):
        starts = [0, *[t for t in range(1, tokens.shape[1]) if reset[row, t]], tokens.shape[1]]
        pieces = [model(tokens[row:row + 1, a:b])[0] for a, b in zip(starts, starts[1:])]
        torch.testing.assert_close(logits[row:row + 1], torch.cat(pieces, dim=1), rtol=0, atol=1e-6)
    unreset, _ = model(tokens)
    no_reset, _ = model(tokens, reset=torch.zeros_like(reset))
    torch.testing.assert_close(no_reset, unreset, rtol=0, atol=1e-6)


def test_reset_stops_the_gradient_at_the_boundary():
    model = small("gru")
    tokens = torch.tensor([[4, 4, 2, 5, 6], [5, 6, 7, 6, 5]])
    logits, _ = model(tokens, reset=tokens == 2)
    logits[0, 3:].sum().backward()
    # row 0 after the reset reads 2, 5, 6 from a zero state: token 4 (read before it) gets no gradient
    assert float(model.embed.weight.grad[4].abs().sum()) == 0.0
    assert float(model.embed.weight.grad[5].abs().sum()) > 0.0


def test_window_objective_equals_tbptt_objective_when_step_equals_bptt():
    stream = token_stream(SENTENCES * 3, 2)
    grads = []
    for objective, chunks in ((TBPTTObjective(), tbptt_chunks(stream, 4)),
                              (TBPTTWindowObjective(), tbptt_windows(stream, 4, 4))):
        model = small("gru")
        losses = [objective(model, chunk) for chunk in chunks]
        sum(out.loss_sum for out in losses).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        assert sum(out.count for out in losses) == stream[:, 1:].numel()
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("reset_id", [None, EOS_ID])
def test_window_objective_gradient_is_the_truncated_one(reset_id):
    stream = token_stream(SENTENCES * 3, 2)
    windows = tbptt_windows(stream, 2, 5)
    model = small("gru")
    objective = TBPTTWindowObjective(reset_id=reset_id)
    start = 0
    for window in windows:
        out = objective(model, window)
        (mine,) = torch.autograd.grad(out.loss_sum, model.rnn.weight_hh_l0)
        # independently: the state at the window's start from a gradient-free pass over the stream so far,
        # then the window with the graph, scoring only its last targets
        kwargs = lambda x: {} if reset_id is None else {"reset": x == reset_id}
        with torch.no_grad():
            before = stream[:, :start]
            state = model(before, **kwargs(before))[1] if start else None
        x = stream[:, start:start + window.inputs.shape[1]]
        logits, _ = model(x, state, **kwargs(x))
        y = stream[:, start + 1:start + 1 + x.shape[1]]
        scored = torch.nn.functional.cross_entropy(
            logits[:, window.score_from:].flatten(0, 1), y[:, window.score_from:].flatten(), reduction="sum")
        (expected,) = torch.autograd.grad(scored, model.rnn.weight_hh_l0)
        torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.loss_sum, scored, rtol=1e-5, atol=1e-5)
        start += window.carry


def test_window_objective_rejects_a_negative_reset_id():
    with pytest.raises(ValueError, match="reset_id"):
        TBPTTWindowObjective(reset_id=-1)


def test_reset_must_be_a_bool_mask_of_the_input_shape():
    with pytest.raises(ValueError, match="reset"):
        small("gru")(torch.tensor([[1, 4]]), reset=torch.tensor([[1, 0]]))
    with pytest.raises(ValueError, match="reset"):
        small("gru")(torch.tensor([[1, 4]]), reset=torch.tensor([[True]]))


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
