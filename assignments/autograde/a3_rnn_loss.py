"""Out-of-process grading spec of a3_rnn_loss (read by `coursekit grade` and by the notebook's hidden blocks; never released).

The one definition of each question (the notebook's hidden blocks evaluate it;
see ``coursekit.course.hidden_score``), with inputs drawn, for each student,
from a seed derived from SEED, the course and the student, keyed by the
course's grading secret (SEED is public, like this file; the secret is not: see
coursekit.grading.secret). Models travel as plain arrays: an adapter in the
sandbox builds the RNN from a seed, calls the student's function and returns
losses, gradients or trained parameters. ``stream_nll``, ``chunked_stream_nll``
and ``grad_gap`` are compared with references computed here; the training loop,
which has no single right answer, is judged by loading the parameters it
returned into an RNN built here and measuring it on a validation stream drawn
from the toy language with the assignment's check seed (keyed by the secret:
``coursekit.grading.spec.check_seed``). That stream is the same for every
student and none can draw it: it never enters the sandbox (under stock
``nbgrader autograde`` the kernel receives its seed).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from coursekit.data import Vocab, tbptt_chunks, token_stream, toy_corpus
from coursekit.grading.spec import AssignmentSpec, Case, CheckedQuestion, FunctionQuestion, ValueQuestion
from coursekit.models import RNNLM

SEED = 275_604_118
CELLS = ("gru", "lstm", "elman")

_corpus = toy_corpus(num_train=600, num_valid=100, num_test=10, seed=0)
_vocab = Vocab(_corpus.language.words)
VOCAB_SIZE = len(_vocab)


def _encode(sentences: Any) -> list[list[int]]:
    return [[_vocab.token_id(word) for word in sentence] for sentence in sentences]


TRAIN_STREAM = token_stream(_encode(_corpus.train), 16)

# The adapters take the model's recipe and its initial parameters as arrays,
# rebuild it in the sandbox and return plain tensors.
ADAPTERS = '''
def _coursekit_rnn(vocab_size, cell, embed_dim, hidden_size, parameters):
    import torch as _torch
    from coursekit.models import RNNLM as _RNNLM
    _model = _RNNLM(int(vocab_size), embed_dim=int(embed_dim), hidden_size=int(hidden_size), cell=str(cell))
    with _torch.no_grad():
        for _target, _value in zip(_model.state_dict().values(), parameters):
            _target.copy_(_value)
    return _model


def _coursekit_state(hidden):
    return list(hidden) if isinstance(hidden, tuple) else [hidden]


def _coursekit_stream_nll(vocab_size, cell, embed_dim, hidden_size, parameters, stream, initial):
    import torch as _torch
    _model = _coursekit_rnn(vocab_size, cell, embed_dim, hidden_size, parameters)
    _h0 = None if not len(initial) else (tuple(initial) if cell == "lstm" else initial[0])
    _loss, _hidden = stream_nll(_model, stream, _h0)
    _grads = _torch.autograd.grad(_loss, list(_model.parameters()))
    return [_loss.detach(), list(_grads), [_h.detach() for _h in _coursekit_state(_hidden)]]


def _coursekit_chunked_stream_nll(vocab_size, cell, embed_dim, hidden_size, parameters, stream, chunk_len, detach):
    import torch as _torch
    _model = _coursekit_rnn(vocab_size, cell, embed_dim, hidden_size, parameters)
    _losses = chunked_stream_nll(_model, stream, int(chunk_len), detach=bool(detach))
    _grads = _torch.autograd.grad(sum(_losses), list(_model.parameters()))
    return [_torch.stack([_l.reshape(()) for _l in _losses]).detach(), list(_grads)]


def _coursekit_train_tbptt(vocab_size, cell, parameters, stream, chunk_len, steps, lr):
    import torch as _torch
    _torch.set_num_threads(1)
    _model = _coursekit_rnn(vocab_size, cell, 16, 48, parameters)
    _history = train_tbptt(_model, stream, chunk_len=int(chunk_len), steps=int(steps), lr=float(lr))
    return [_torch.tensor([float(_h) for _h in _history], dtype=_torch.float64),
            [_p.detach() for _p in _model.state_dict().values()],
            _torch.tensor(all(isinstance(_h, float) for _h in _history))]
'''


def _numpy_state(model: torch.nn.Module) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in model.state_dict().values()]


def _build(cell: str, embed_dim: int, hidden_size: int, parameters: list[Any]) -> RNNLM:
    model = RNNLM(VOCAB_SIZE, embed_dim=embed_dim, hidden_size=hidden_size, cell=cell)
    state = model.state_dict()
    if len(parameters) != len(state):
        raise ValueError(f"expected {len(state)} parameter tensors, got {len(parameters)}")
    with torch.no_grad():
        for target, value in zip(state.values(), parameters):
            target.copy_(torch.as_tensor(value))
    return model


def _state_list(hidden: Any) -> list[torch.Tensor]:
    return list(hidden) if isinstance(hidden, tuple) else [hidden]


def _reference_stream_nll(vocab_size, cell, embed_dim, hidden_size, parameters, stream, initial):
    model = _build(cell, embed_dim, hidden_size, parameters)
    h0 = None if not len(initial) else (tuple(initial) if cell == "lstm" else initial[0])
    logits, hidden = model(stream[:, :-1], h0)
    loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), stream[:, 1:].reshape(-1), reduction="sum")
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return [loss.detach(), list(grads), [h.detach() for h in _state_list(hidden)]]


def _chunk_losses(model: RNNLM, stream: torch.Tensor, chunk_len: int, detach: bool) -> list[torch.Tensor]:
    """Summed NLL of each truncated-BPTT chunk, the state carried (and detached if asked) across chunks."""
    losses, hidden = [], None
    for inputs, targets in tbptt_chunks(stream, int(chunk_len)):
        if hidden is not None and detach:
            hidden = tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()
        logits, hidden = model(inputs, hidden)
        losses.append(F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), targets.reshape(-1), reduction="sum"))
    return losses


def _reference_chunks(vocab_size, cell, embed_dim, hidden_size, parameters, stream, chunk_len, detach):
    model = _build(cell, embed_dim, hidden_size, parameters)
    losses = _chunk_losses(model, stream, chunk_len, detach)
    grads = torch.autograd.grad(sum(losses), list(model.parameters()))
    return [torch.stack(losses).detach(), list(grads)]


def _fresh_parameters(seed: int, cell: str, embed_dim: int, hidden_size: int) -> list[np.ndarray]:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _numpy_state(RNNLM(VOCAB_SIZE, embed_dim=embed_dim, hidden_size=hidden_size, cell=cell))


def stream_nll_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for index, (rows, steps) in enumerate([(1, 2), (3, 17), (16, 40), (5, 9), (2, 33), (4, 3)]):
        cell = CELLS[index % 3]
        parameters = _fresh_parameters(int(rng.integers(1 << 30)), cell, 6, 10)
        start = int(rng.integers(0, TRAIN_STREAM.shape[1] - steps))
        stream = TRAIN_STREAM[:rows, start:start + steps].numpy().copy()
        initial: list[np.ndarray] = []
        if index % 2:
            parts = 2 if cell == "lstm" else 1
            initial = [rng.standard_normal((1, rows, 10)).astype(np.float32) for _ in range(parts)]
        cases.append(Case((VOCAB_SIZE, cell, 6, 10, parameters, stream, initial)))
    return cases


def chunked_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    # Cells cycle GRU, LSTM, Elman: the last two give the GRU and the Elman cell several chunks too.
    shapes = [(1, 2, 1), (3, 23, 5), (4, 30, 29), (2, 12, 50), (3, 41, 7), (2, 17, 4), (3, 15, 4)]
    for index, (rows, steps, chunk) in enumerate(shapes):
        cell = CELLS[index % 3]
        parameters = _fresh_parameters(int(rng.integers(1 << 30)), cell, 6, 10)
        start = int(rng.integers(0, TRAIN_STREAM.shape[1] - steps))
        stream = TRAIN_STREAM[:rows, start:start + steps].numpy().copy()
        for detach in (True, False):
            cases.append(Case((VOCAB_SIZE, cell, 6, 10, parameters, stream, chunk, detach)))
    return cases


def _expected_gap() -> float:
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = RNNLM(VOCAB_SIZE, embed_dim=8, hidden_size=16, cell="gru")
    stream = TRAIN_STREAM[:4, :41]
    logits, _ = model(stream[:, :-1])
    full = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), stream[:, 1:].reshape(-1), reduction="sum")
    first = torch.autograd.grad(full, list(model.parameters()))
    second = torch.autograd.grad(sum(_chunk_losses(model, stream, 5, detach=True)), list(model.parameters()))
    return max(float((a - b).abs().max()) for a, b in zip(first, second))


# --- training: judged on a validation stream only the grader can draw ----------
@lru_cache(maxsize=2)
def hidden_valid_stream(check_seed: int) -> torch.Tensor:
    """The validation stream the trained models are measured on, drawn from the assignment's check seed."""
    sentences = toy_corpus(num_train=1, num_valid=300, num_test=1, seed=check_seed % 100_003).valid
    return token_stream(_encode(sentences), 4)


# (cell, seed of the initial parameters, chunk_len, steps, lr, validation NLL to beat):
# the notebook's visible run (a GRU, 150 steps, below 2.0) and its hidden one
# (an LSTM, 120 steps, below 2.3). The reference loop reaches about 1.66 and 1.68
# here (the true entropy is 1.58).
TRAINING_RUNS = (("gru", 0, 20, 150, 0.01, 2.0), ("lstm", 1, 15, 120, 0.01, 2.3))


def training_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for cell, seed, chunk_len, steps, lr, _threshold in TRAINING_RUNS:
        parameters = _fresh_parameters(seed, cell, 16, 48)
        cases.append(Case((VOCAB_SIZE, cell, parameters, TRAIN_STREAM.numpy().copy(), chunk_len, steps, lr)))
    return cases


def validation_nll(model: RNNLM, stream: torch.Tensor) -> float:
    """Token-mean next-token NLL of ``model`` on ``stream`` (B, N)."""
    with torch.no_grad():
        logits, _ = model(stream[:, :-1])
        return F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), stream[:, 1:].reshape(-1)).item()


def check_training(value: Any, case: Case, check_seed: int) -> str | None:
    """The trained parameters must give a low NLL on the hidden stream; the history must have one float per step."""
    _vocab_size, cell, _initial, _stream, _chunk_len, steps, _lr = case.args
    threshold = next(run[5] for run in TRAINING_RUNS if run[0] == cell)
    if not isinstance(value, list) or len(value) != 3 or not isinstance(value[1], list):
        return "train_tbptt's model or history did not come back"
    history, parameters, floats = value
    if not isinstance(history, np.ndarray) or history.shape != (steps,):
        return f"train_tbptt must return one loss per step ({steps} steps)"
    if not (isinstance(floats, np.ndarray) and floats.shape == () and bool(floats)):
        return "train_tbptt's history must hold Python floats (loss.item()), as the visible check asks"
    if not np.all(np.isfinite(history)):
        return "the training losses are not finite"
    for got, want in zip(parameters, _initial):
        if not isinstance(got, np.ndarray) or got.shape != want.shape or got.dtype != want.dtype:
            return "train_tbptt must train the model it is given (its parameters changed shape)"
    try:
        model = _build(cell, 16, 48, parameters)
    except (ValueError, RuntimeError, TypeError):
        return "train_tbptt must train the model it is given"
    nll = validation_nll(model, hidden_valid_stream(check_seed))
    if not math.isfinite(nll) or nll >= threshold:
        return f"the trained {cell.upper()} does not reach a validation NLL below {threshold}"
    return None


SPEC = AssignmentSpec(
    assignment="a3_rnn_loss",
    notebook="a3_rnn_loss",
    seed=SEED,
    questions=(
        FunctionQuestion("test_stream_nll", "_coursekit_stream_nll", 3, stream_nll_cases, _reference_stream_nll,
                         rtol=1e-4, atol=1e-4, options=("vocab_size", "cell", "embed_dim", "hidden_size"),
                         adapter=ADAPTERS, student_function="stream_nll",
                         outputs=("the loss", "the gradients of the model's parameters", "the final hidden state")),
        FunctionQuestion("test_chunked_stream_nll", "_coursekit_chunked_stream_nll", 3, chunked_cases,
                         _reference_chunks, rtol=1e-4, atol=1e-4, student_function="chunked_stream_nll",
                         options=("vocab_size", "cell", "embed_dim", "hidden_size", "chunk_len", "detach"),
                         outputs=("the chunks' losses", "the gradients of the model's parameters")),
        ValueQuestion("test_gaps", 2, {"loss_gap": (0.0,), "grad_gap": (_expected_gap(),)}, rtol=1e-3, atol=1e-3),
        CheckedQuestion("test_train_tbptt", "_coursekit_train_tbptt", 4, training_cases, check_training,
                        student_function="train_tbptt"),
    ),
)
