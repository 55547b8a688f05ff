"""Hypothesis strategies shared by the loss tests (and anyone else who needs batches).

Tensors are not drawn element by element: a strategy draws the *structure*
(batch size, length, vocabulary size, dtype, which rows are padded) plus an
integer seed, and the values come from a seeded ``torch.Generator``. That keeps
hypothesis fast and every failing example reproducible from the printed seed.

The edge cases the losses must survive are always reachable: ``B = 1``,
``T = 1``, ``V = 2``, rows that are partly padded, rows that are entirely
padded, and both ``float32`` and ``float64``.

Typical use::

    from tests.strategies import padded_batches

    @given(padded_batches())
    def test_something(batch):
        logits, targets, mask = batch.logits, batch.targets, batch.mask
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

IGNORE_INDEX = -100
FLOAT_DTYPES = (torch.float32, torch.float64)

#: float dtypes under test
float_dtypes = st.sampled_from(FLOAT_DTYPES)

#: seeds for ``torch.Generator``
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def random_logits(
    shape: tuple[int, ...], *, seed: int, dtype: torch.dtype = torch.float64, scale: float = 3.0
) -> torch.Tensor:
    """Standard-normal logits times ``scale``, reproducible from ``seed``."""
    return (torch.randn(shape, generator=generator(seed), dtype=torch.float64) * scale).to(dtype)


def random_targets(shape: tuple[int, ...], num_classes: int, *, seed: int) -> torch.Tensor:
    """Uniform class indices in ``[0, num_classes)``, reproducible from ``seed``."""
    return torch.randint(0, num_classes, shape, generator=generator(seed))


def mask_from_lengths(lengths: list[int], max_len: int) -> torch.Tensor:
    """Boolean ``(B, max_len)`` mask, True on the first ``lengths[b]`` positions of row ``b``.

    Written independently of ``coursekit.losses.sequence_mask`` so tests can use it as a reference.
    """
    rows = [[t < n for t in range(max_len)] for n in lengths]
    return torch.tensor(rows, dtype=torch.bool).reshape(len(lengths), max_len)


@dataclass(frozen=True)
class PaddedBatch:
    """A padded batch of logits and targets.

    Attributes:
        logits: ``(B, T, V)`` float scores; padded positions hold ordinary random values
            (a loss must ignore them, whatever they are).
        targets: ``(B, T)`` long; ``IGNORE_INDEX`` on padded positions.
        mask: ``(B, T)`` bool; True on real tokens.
        lengths: the number of real tokens of each row (0 for an all-padded row).
        seed: the seed the values came from.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    lengths: tuple[int, ...]
    seed: int

    @property
    def shape(self) -> tuple[int, int, int]:
        b, t, v = self.logits.shape
        return b, t, v

    @property
    def dtype(self) -> torch.dtype:
        return self.logits.dtype

    @property
    def raw_targets(self) -> torch.Tensor:
        """Targets with padded positions filled by valid class indices instead of ``IGNORE_INDEX``."""
        fill = random_targets(tuple(self.targets.shape), self.logits.shape[-1], seed=self.seed + 7)
        return torch.where(self.mask, self.targets, fill)


@st.composite
def batch_shapes(
    draw: st.DrawFn, *, max_batch: int = 4, max_time: int = 6, min_vocab: int = 2, max_vocab: int = 7
) -> tuple[int, int, int]:
    """``(B, T, V)`` with ``B = 1``, ``T = 1`` and ``V = min_vocab`` all reachable (and shrunk towards)."""
    b = draw(st.integers(1, max_batch))
    t = draw(st.integers(1, max_time))
    v = draw(st.integers(min_vocab, max_vocab))
    return b, t, v


@st.composite
def lengths_for(draw: st.DrawFn, batch: int, max_time: int, *, allow_empty: bool = True) -> tuple[int, ...]:
    """Per-row lengths in ``[0 or 1, max_time]``, biased so full rows, padded rows and empty rows all occur."""
    low = 0 if allow_empty else 1
    choice = st.one_of(st.just(max_time), st.integers(low, max_time), st.just(low))
    return tuple(draw(choice) for _ in range(batch))


@st.composite
def padded_batches(
    draw: st.DrawFn,
    *,
    max_batch: int = 4,
    max_time: int = 6,
    min_vocab: int = 2,
    max_vocab: int = 7,
    dtypes: st.SearchStrategy[torch.dtype] = float_dtypes,
    allow_empty_rows: bool = True,
    require_one_token: bool = False,
    scale: float = 3.0,
) -> PaddedBatch:
    """A :class:`PaddedBatch` with random structure.

    Args:
        allow_empty_rows: rows of length 0 may occur (so may a batch with no real token at all,
            unless ``require_one_token``).
        require_one_token: at least one row has a real token (for PyTorch "mean" reductions,
            which are nan on an empty batch).
        scale: standard deviation of the logits.
    """
    b, t, v = draw(batch_shapes(max_batch=max_batch, max_time=max_time, min_vocab=min_vocab, max_vocab=max_vocab))
    lengths = list(draw(lengths_for(b, t, allow_empty=allow_empty_rows)))
    if require_one_token and sum(lengths) == 0:
        lengths[0] = 1
    dtype = draw(dtypes)
    seed = draw(seeds)
    logits = random_logits((b, t, v), seed=seed, dtype=dtype, scale=scale)
    mask = mask_from_lengths(lengths, t)
    targets = random_targets((b, t), v, seed=seed + 1).masked_fill(~mask, IGNORE_INDEX)
    return PaddedBatch(logits=logits, targets=targets, mask=mask, lengths=tuple(lengths), seed=seed)


@st.composite
def random_masks(draw: st.DrawFn, shape: tuple[int, ...], *, allow_all_false: bool = True) -> torch.Tensor:
    """A boolean mask of ``shape`` with arbitrary (not only prefix) True positions."""
    seed = draw(seeds)
    density = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]) if allow_all_false else st.sampled_from([0.3, 0.7, 1.0]))
    mask = torch.rand(shape, generator=generator(seed)) < density
    if not allow_all_false and not bool(mask.any()):
        mask.view(-1)[0] = True
    return mask


@st.composite
def token_loss_batches(
    draw: st.DrawFn, *, max_batch: int = 4, max_time: int = 6, allow_empty_rows: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(token_losses, mask)``: non-negative ``(B, T)`` losses and a prefix mask from random lengths."""
    b = draw(st.integers(1, max_batch))
    t = draw(st.integers(1, max_time))
    lengths = draw(lengths_for(b, t, allow_empty=allow_empty_rows))
    dtype = draw(float_dtypes)
    seed = draw(seeds)
    losses = (torch.rand((b, t), generator=generator(seed), dtype=torch.float64) * 5).to(dtype)
    return losses, mask_from_lengths(list(lengths), t)


#: mask dtypes the losses accept: boolean, and the integer 0/1 masks Hugging Face and TRL pass
MASK_DTYPES = (torch.bool, torch.long, torch.int32, torch.uint8)
mask_dtypes = st.sampled_from(MASK_DTYPES)


@dataclass(frozen=True)
class ResponseBatch:
    """Sampled responses of a policy, for the policy-gradient objective.

    Attributes:
        log_probs: ``(B, T)`` float64, log-probabilities of the sampled tokens under the policy;
            padded positions hold ordinary values (the losses must not let them count).
        old_log_probs: ``(B, T)``, the same tokens under the sampling policy (ratios from about 0.5 to 2).
        advantages: ``(B,)`` or ``(B, T)``.
        mask: ``(B, T)``, True/1 on response tokens, of a dtype from :data:`MASK_DTYPES`.
        seed: the seed the values came from.
    """

    log_probs: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    seed: int

    @property
    def counted(self) -> torch.Tensor:
        """The mask as booleans."""
        return self.mask != 0


@st.composite
def response_batches(
    draw: st.DrawFn, *, max_batch: int = 4, max_time: int = 6, allow_empty_rows: bool = True
) -> ResponseBatch:
    """A :class:`ResponseBatch` with random lengths, mask dtype and advantage shape."""
    b = draw(st.integers(1, max_batch))
    t = draw(st.integers(1, max_time))
    lengths = draw(lengths_for(b, t, allow_empty=allow_empty_rows))
    seed = draw(seeds)
    g = generator(seed)
    log_probs = -torch.rand(b, t, generator=g, dtype=torch.float64) * 4
    old_log_probs = log_probs + (torch.rand(b, t, generator=g, dtype=torch.float64) - 0.5) * 1.4
    per_token = draw(st.booleans())
    advantages = torch.randn((b, t) if per_token else (b,), generator=g, dtype=torch.float64)
    mask = mask_from_lengths(list(lengths), t).to(draw(mask_dtypes))
    return ResponseBatch(log_probs, old_log_probs, advantages, mask, seed)


@st.composite
def preference_pairs(draw: st.DrawFn, *, max_pairs: int = 6) -> tuple[torch.Tensor, ...]:
    """Four ``(N,)`` float64 tensors of sequence log-probabilities (policy and reference, chosen and rejected)."""
    n, seed = draw(st.integers(1, max_pairs)), draw(seeds)
    return tuple(-(torch.rand(4, n, generator=generator(seed), dtype=torch.float64) * 40))


#: hypothesis settings for the loss tests: enough examples to reach the edge cases, no per-example deadline
#: (the first call of a torch op can be slow), so the whole loss suite stays well under its time budget.
loss_settings = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def gradcheck64(fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> bool:
    """``torch.autograd.gradcheck`` in float64 (inputs must already be float64, requires_grad=True).

    ``fast_mode`` compares the analytical and numerical Jacobians projected on random directions
    instead of building both in full (a wrong Jacobian is caught unless the error happens to be
    orthogonal to the directions, which has probability zero); about ten times faster on a shared
    CPU. The directions come from a fixed seed, so a failure reproduces.
    """
    assert all(x.dtype == torch.float64 for x in inputs), "gradcheck64 needs float64 inputs"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.autograd.gradcheck(fn, inputs, fast_mode=True)


# --- data and models (coursekit.data, coursekit.models) ---------------------------------

@st.composite
def id_sentences(draw: st.DrawFn, *, vocab_size: int = 12, first_id: int = 4, max_batch: int = 5,
                 max_len: int = 6, allow_empty: bool = False) -> list[list[int]]:
    """A non-empty list of sentences of ordinary ids in ``[first_id, vocab_size)`` (no specials)."""
    sentence = st.lists(st.integers(first_id, vocab_size - 1), min_size=0 if allow_empty else 1, max_size=max_len)
    return draw(st.lists(sentence, min_size=1, max_size=max_batch))


# --- nbgrader cell sources (coursekit.grading.hidden_tests) ------------------------------

#: lines a test cell may hold: code, blanks, and nbgrader's hidden-test markers written the ways
#: instructors (and students) write them: indented, in a comment, inside a string, lower case,
#: both on one line, with a carriage return left by a Windows editor.
SOURCE_LINES = (
    "assert f(1) == 1",
    "secret_check(f)",
    "",
    "   ",
    "### BEGIN HIDDEN TESTS",
    "### END HIDDEN TESTS",
    "    ### BEGIN HIDDEN TESTS",
    "    ### END HIDDEN TESTS",
    "x = 1  # BEGIN HIDDEN TESTS below",
    'print("END HIDDEN TESTS")',
    "# begin hidden tests",
    "# BEGIN HIDDEN TESTS and END HIDDEN TESTS",
    "### BEGIN HIDDEN TESTS\r",
    "### END HIDDEN TESTS\r",
    "visible()\r",
)


@st.composite
def cell_sources(draw: st.DrawFn, *, max_lines: int = 14) -> str:
    """A cell source drawn as a mix of :data:`SOURCE_LINES`, joined by ``\\n`` or ``\\r\\n``."""
    lines = draw(st.lists(st.sampled_from(SOURCE_LINES), max_size=max_lines))
    separator = draw(st.sampled_from(("\n", "\r\n")))
    trailing = draw(st.sampled_from(("", separator)))
    return separator.join(lines) + trailing
