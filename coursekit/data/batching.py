"""Padding, masks and length bucketing: turning lists of ids into tensors.

A padded batch has shape ``(B, T)`` with ``T`` the longest sequence; the
positions past a sequence's length hold ``<pad>`` and are False in the mask.
Losses read the mask, never the pad id, so what sits under padding never
matters.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import NamedTuple

import numpy
import torch

from coursekit.data._checks import (
    are_plain_ids,
    id_list,
    pair_items,
    require_id,
    require_int,
    require_seed,
    row_list,
    shown,
)
from coursekit.data.vocab import BOS_ID, EOS_ID, PAD_ID
from coursekit.losses._checks import finite_float, type_text


@dataclass(frozen=True)
class PaddedBatch:
    """Padded ids with their lengths and mask.

    Attributes:
        tokens: ``(B, T)`` long, ``pad_id`` past each length.
        lengths: ``(B,)`` long.
        mask: ``(B, T)`` bool, True on real tokens.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class LMBatch:
    """A language-modelling batch: ``inputs = <bos> y``, ``targets = y <eos>``.

    Attributes:
        inputs, targets: ``(B, T)`` long; ``targets[:, t]`` is what position ``t`` predicts.
        mask: ``(B, T)`` bool, True on the ``len(y) + 1`` counted positions.
        lengths: ``(B,)`` long, ``len(y) + 1``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class Seq2SeqBatch:
    """A translation batch.

    Attributes:
        src: ``(B, S)`` long source ids; src_lengths ``(B,)``; src_mask ``(B, S)``.
        tgt_in: ``(B, T)`` decoder inputs ``<bos> y``; tgt_out ``(B, T)`` targets ``y <eos>``;
            tgt_mask ``(B, T)``; tgt_lengths ``(B,)`` = ``len(y) + 1``.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    src_mask: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    tgt_mask: torch.Tensor
    tgt_lengths: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.tgt_mask.sum())


def _id_rows(name: str, sequences: Sequence[Sequence[int]], *, allow_empty_rows: bool) -> list[list[int]]:
    """``sequences`` as lists of Python ints in ``[0, 2**63)`` (:func:`_checked_rows`); a bad id is ``name[i][j]``."""
    sequences = row_list(name, sequences, "sequences of ids")  # type: ignore[assignment]
    if len(sequences) == 0:
        raise ValueError(f"{name} must hold at least one sequence, got an empty batch")
    rows = _checked_rows(sequences, lambda i: f"{name}[{i}]")
    if not allow_empty_rows:
        for i, row in enumerate(rows):
            if len(row) == 0:
                raise ValueError(f"{name}[{i}] has length 0; every sequence needs at least one token")
    return rows


def _checked_rows(sequences: Sequence[Sequence[int]], row_name: Callable[[int], str]) -> list[list[int]]:
    """Every row checked by ``id_list`` under the name ``row_name(i)``.

    Rows that are lists or tuples of Python ints, the common case, are checked in one pass over all
    their ids; ``id_list`` then runs only to convert other rows or to name the bad id.
    """
    if all(type(seq) in (list, tuple) for seq in sequences):
        if are_plain_ids(list(chain.from_iterable(sequences))):
            return list(sequences)  # type: ignore[arg-type]
    return [id_list(row_name(i), seq) for i, seq in enumerate(sequences)]


def _pad(rows: list[list[int]], pad_id: int) -> PaddedBatch:
    """Pad checked rows (:func:`_id_rows`) with ``pad_id``: one tensor of all the ids, written under the mask."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    width = int(lengths.max())
    mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    # the mask is True on each row's first len(row) positions, so row-major order is the rows concatenated
    tokens[mask] = torch.tensor(list(chain.from_iterable(rows)), dtype=torch.long)
    return PaddedBatch(tokens=tokens, lengths=lengths, mask=mask)


def _special_ids(bos_id: object, eos_id: object, pad_id: object) -> tuple[int, int, int]:
    """``bos_id``, ``eos_id`` and ``pad_id`` checked (:func:`require_id`), as Python ints in ``[0, 2**63)``."""
    return require_id("bos_id", bos_id), require_id("eos_id", eos_id), require_id("pad_id", pad_id)


def _split_pairs(pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> tuple[list[list[int]], list[list[int]]]:
    """The checked sources and targets of ``(source, target)`` pairs; a bad id is ``pairs[i][0][j]`` or ``[1][j]``."""
    sources, targets = [], []
    for i, pair in enumerate(pairs):
        source, target = pair_items(f"pairs[{i}]", pair, "a (source ids, target ids) pair")
        sources.append(source)
        targets.append(target)
    return (_checked_rows(sources, lambda i: f"pairs[{i}][0]"),
            _checked_rows(targets, lambda i: f"pairs[{i}][1]"))


def pad_batch(sequences: Sequence[Sequence[int]], *, pad_id: int = PAD_ID) -> PaddedBatch:
    """Pad sequences of ids to a ``(B, T)`` tensor.

    Args:
        sequences: the sequences of ids, each of length >= 1: sequences of Python or NumPy ints, or
            1-D tensors or NumPy arrays of an integer dtype.
        pad_id: the id written past each sequence's end (an int in ``[0, 2**63)``, as every id).

    Returns:
        A :class:`PaddedBatch`.

    Shapes:
        tokens, mask: ``(B, max length)``; lengths: ``(B,)``.

    Raises:
        TypeError: an id that is not a Python or NumPy int (a float, a bool, a str: the message names
            its position, e.g. ``sequences[1][0]``), a sequence that is not a sequence of ints or a 1-D
            integer tensor or array, or ``sequences`` itself not a sequence (a str, a 0-d tensor).
        ValueError: the batch is empty, a sequence has length 0, or an id or ``pad_id`` lies outside
            ``[0, 2**63)`` (negative, or beyond ``torch.long``).

    Example:
        >>> batch = pad_batch([[5, 6, 7], [8]])
        >>> batch.tokens.tolist(), batch.lengths.tolist(), batch.mask.tolist()
        ([[5, 6, 7], [8, 0, 0]], [3, 1], [[True, True, True], [True, False, False]])
    """
    rows = _id_rows("sequences", sequences, allow_empty_rows=False)
    pad_id = require_id("pad_id", pad_id)
    return _pad(rows, pad_id)


def lm_batch(sentences: Sequence[Sequence[int]], *, bos_id: int = BOS_ID, eos_id: int = EOS_ID,
             pad_id: int = PAD_ID) -> LMBatch:
    """A language-modelling batch from sentences of ids (without ``<bos>``/``<eos>``).

    An empty sentence is allowed: the model must still predict its ``<eos>``.

    Args:
        sentences: the sentences of ids, as for :func:`pad_batch`.
        bos_id, eos_id, pad_id: the ids of ``<bos>``, ``<eos>`` and ``<pad>`` (ints in ``[0, 2**63)``).

    Returns:
        An :class:`LMBatch`.

    Shapes:
        inputs, targets, mask: ``(B, max length + 1)``; lengths: ``(B,)``.

    Raises:
        TypeError: an id that is not a Python or NumPy int (a float, a bool, a str: the message names
            its position, e.g. ``sentences[1][0]``), a sentence that is not a sequence of ints or a 1-D
            integer tensor or array, or ``sentences`` itself not a sequence (a str, a 0-d tensor).
        ValueError: the batch is empty, or an id or a special id lies outside ``[0, 2**63)`` (negative, or
            beyond ``torch.long``).

    Example:
        >>> batch = lm_batch([[5, 6], [7]])
        >>> batch.inputs.tolist(), batch.targets.tolist(), batch.lengths.tolist()
        ([[1, 5, 6], [1, 7, 0]], [[5, 6, 2], [7, 2, 0]], [3, 2])
    """
    rows = _id_rows("sentences", sentences, allow_empty_rows=True)
    bos_id, eos_id, pad_id = _special_ids(bos_id, eos_id, pad_id)
    inputs = _pad([[bos_id, *s] for s in rows], pad_id)
    targets = _pad([[*s, eos_id] for s in rows], pad_id)
    return LMBatch(inputs=inputs.tokens, targets=targets.tokens, mask=targets.mask, lengths=targets.lengths)


def seq2seq_batch(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], *, bos_id: int = BOS_ID,
                  eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Seq2SeqBatch:
    """A translation batch from ``(source ids, target ids)`` pairs (targets without ``<bos>``/``<eos>``).

    Args:
        pairs: ``(source, target)`` pairs of id sequences, as for :func:`pad_batch`; a source has at
            least one id, a target may be empty.
        bos_id, eos_id, pad_id: the ids of ``<bos>``, ``<eos>`` and ``<pad>`` (ints in ``[0, 2**63)``).

    Returns:
        A :class:`Seq2SeqBatch`.

    Raises:
        TypeError: an id that is not a Python or NumPy int (a float, a bool, a str: the message names
            its position, e.g. ``pairs[2][1][0]``), a source or target that is neither a sequence nor a
            1-D integer tensor or array, a pair that is not two of them (a str, a tuple of three: the
            message names it, e.g. ``pairs[2]``, and its length), or ``pairs`` itself not a sequence (a
            str, a 0-d tensor).
        ValueError: the batch is empty, a source has length 0, or an id or a special id lies outside
            ``[0, 2**63)`` (negative, or beyond ``torch.long``).

    Example:
        >>> batch = seq2seq_batch([([4, 5], [6]), ([7], [8, 9])])
        >>> batch.src.tolist(), batch.tgt_in.tolist(), batch.tgt_out.tolist()
        ([[4, 5], [7, 0]], [[1, 6, 0], [1, 8, 9]], [[6, 2, 0], [8, 9, 2]])
    """
    pairs = row_list("pairs", pairs, "(source ids, target ids) pairs")  # type: ignore[assignment]
    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one pair, got an empty batch")
    sources, targets = _split_pairs(pairs)
    for i, source in enumerate(sources):
        if len(source) == 0:
            raise ValueError(f"pairs[{i}] has a source of length 0; every source needs at least one token")
    bos_id, eos_id, pad_id = _special_ids(bos_id, eos_id, pad_id)
    src = _pad(sources, pad_id)
    tgt_in = _pad([[bos_id, *t] for t in targets], pad_id)
    tgt_out = _pad([[*t, eos_id] for t in targets], pad_id)
    return Seq2SeqBatch(src=src.tokens, src_lengths=src.lengths, src_mask=src.mask, tgt_in=tgt_in.tokens,
                        tgt_out=tgt_out.tokens, tgt_mask=tgt_out.mask, tgt_lengths=tgt_out.lengths)


def _example_lengths(lengths: object) -> list[int]:
    """A batch plan's ``lengths`` checked by ``id_list`` (before anything takes its ``len``), and not empty."""
    checked = id_list("lengths", lengths, size=None)
    if not checked:
        raise ValueError("lengths must hold at least one example, got an empty sequence")
    return checked


def bucket_batches(lengths: Iterable[int], batch_size: int, *, seed: int, shuffle: bool = True,
                   bucket_factor: int = 20) -> list[list[int]]:
    """Group example indices into batches of similar length.

    The indices are shuffled (by ``seed``), cut into pools of
    ``batch_size * bucket_factor``, each pool is sorted by length and cut into
    batches, and the batches are shuffled. Similar lengths waste less padding;
    the pools keep some randomness. ``bucket_factor=1`` is plain random batching.

    Args:
        lengths: the length of every example: a sequence (or other iterable, a generator too) of Python
            or NumPy ints >= 0, or a 1-D integer tensor or array.
        batch_size: examples per batch (the last batch of a pool may be smaller).
        seed: seed of the shuffles (int >= 0).
        shuffle: without it, indices are sorted by length and batched in order.
        bucket_factor: pool size in batches.

    Returns:
        A list of batches, each a list of indices; every index appears exactly once.

    Raises:
        TypeError: ``lengths`` is not iterable, is a str, or is a tensor or array that is not 1-D of an
            integer dtype (a 0-d tensor); a length is not a Python or NumPy int (the message names its
            position); ``batch_size`` or ``bucket_factor`` is not a Python or NumPy int; or ``seed`` is
            not a Python int.
        ValueError: empty ``lengths``, a negative length, ``batch_size < 1``, ``bucket_factor < 1`` or a
            seed outside ``[0, 2**63)``.

    Example:
        >>> bucket_batches([5, 1, 4, 2], 2, seed=0, shuffle=False)
        [[1, 3], [2, 0]]
    """
    lengths = _example_lengths(lengths)
    batch_size = require_int("batch_size", batch_size, minimum=1)
    bucket_factor = require_int("bucket_factor", bucket_factor, minimum=1)
    require_seed("seed", seed)
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda i: (lengths[i], i))
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = random.Random(seed)
    rng.shuffle(order)
    pool = batch_size * bucket_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches



def token_budget_batches(lengths: Iterable[int], max_tokens: int, *, seed: int, shuffle: bool = True) -> list[list[int]]:
    """Group example indices into batches whose padded size stays within a token budget.

    The examples are sorted by length (ties broken at random by ``seed``) and cut
    greedily: a batch grows while its padded size, ``len(batch) * max(lengths in
    batch)``, stays at most ``max_tokens`` (:math:`N_{\\max}`, fairseq's
    ``--max-tokens``). Batches of short examples therefore hold many examples and
    batches of long ones few; every batch holds at most ``max_tokens`` positions
    (fewer where the next example would not fit, or the examples run out). The
    batches are then shuffled.

    Args:
        lengths: the length of every example: a sequence (or other iterable, a generator too) of Python
            or NumPy ints >= 0 (a float or a NaN would break the budget), or a 1-D integer tensor or array.
        max_tokens: the budget :math:`N_{\\max}` of padded positions per batch.
        seed: seed of the shuffles (int >= 0).
        shuffle: without it, ties keep index order and batches stay in length order.

    Returns:
        A list of batches, each a list of indices; every index appears exactly once.

    Raises:
        TypeError: ``lengths`` is not iterable, is a str, or is a tensor or array that is not 1-D of an
            integer dtype (a 0-d tensor); a length is not a Python or NumPy int (the message names its
            position, e.g. ``lengths[1]``); ``max_tokens`` is not a Python or NumPy int; or ``seed`` is
            not a Python int.
        ValueError: empty ``lengths``, a negative length, ``max_tokens < 1``, an example longer than
            ``max_tokens`` (the message names the first, e.g. ``lengths[3]``), or a seed outside
            ``[0, 2**63)``.

    Example:
        >>> token_budget_batches([5, 1, 4, 2, 2], 8, seed=0, shuffle=False)
        [[1, 3, 4], [2], [0]]
    """
    lengths = _example_lengths(lengths)
    max_tokens = require_int("max_tokens", max_tokens, minimum=1)
    require_seed("seed", seed)
    if max(lengths) > max_tokens:
        first = next(i for i, length in enumerate(lengths) if length > max_tokens)
        raise ValueError(f"lengths[{first}] must be <= max_tokens={shown(max_tokens)} (an example must fit a batch "
                         f"on its own), got {shown(lengths[first])}")
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])          # stable: shuffled ties stay shuffled
    batches: list[list[int]] = []
    batch: list[int] = []
    for index in order:
        # sorted by length, so the newest example is the longest of the batch
        if batch and (len(batch) + 1) * lengths[index] > max_tokens:
            batches.append(batch)
            batch = []
        batch.append(index)
    batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches

def token_stream(sentences: Sequence[Sequence[int]], batch_size: int, *, eos_id: int = EOS_ID) -> torch.Tensor:
    """Concatenate sentences (each followed by ``<eos>``) and fold into ``batch_size`` parallel streams.

    For truncated backpropagation through time: row ``b`` of the result is one
    long text, read chunk by chunk with the hidden state carried across chunks.
    The tail that does not fill a whole column is dropped.

    Args:
        sentences: the sentences of ids, as for :func:`pad_batch` (an empty one adds its ``<eos>``).
        batch_size: the number of streams (int >= 1).
        eos_id: the id written after every sentence (an int in ``[0, 2**63)``, as every id).

    Returns:
        A long tensor of the streams.

    Shapes:
        result: ``(batch_size, N // batch_size)``.

    Raises:
        TypeError: an id that is not a Python or NumPy int (a float, a bool, a str: the message names
            its position, e.g. ``sentences[1][0]``), a sentence that is not a sequence of ints or a 1-D
            integer tensor or array, or ``sentences`` itself not a sequence (a str, a 0-d tensor).
        ValueError: no sentences, ``batch_size < 1``, fewer tokens than ``2 * batch_size``, or an id or
            ``eos_id`` outside ``[0, 2**63)`` (negative, or beyond ``torch.long``).

    Example:
        >>> token_stream([[5, 6], [7]], 2).tolist()
        [[5, 6], [2, 7]]
    """
    rows = _id_rows("sentences", sentences, allow_empty_rows=True)
    batch_size = require_int("batch_size", batch_size, minimum=1)
    eos_id = require_id("eos_id", eos_id)
    flat = [token for sentence in rows for token in (*sentence, eos_id)]
    width = len(flat) // batch_size
    if width < 2:
        raise ValueError(f"batch_size={shown(batch_size)} is too large for {len(flat)} tokens (need 2 per stream)")
    return torch.tensor(flat[: width * batch_size], dtype=torch.long).view(batch_size, width)


def stream_values(per_token: Sequence[Sequence[float]], batch_size: int) -> torch.Tensor:
    """Per-token values laid out exactly as :func:`token_stream` lays out the tokens.

    For analysing a model trained on a stream: give one value per token of every sentence *and*
    one for its ``<eos>`` (a true log-probability, a label), and the result lines up with
    ``token_stream(sentences, batch_size)``; ``[:, 1:]`` then lines up with the stream's targets.

    Args:
        per_token: one sequence per sentence (or any iterable of them), ``len(sentence) + 1`` values
            each: finite real numbers (Python or NumPy ints and floats, not bools), or a 1-D tensor or
            array of them.
        batch_size: the rows of the stream.

    Returns:
        A float64 tensor of shape ``(batch_size, total // batch_size)``; the tail is dropped as in
        :func:`token_stream`.

    Raises:
        TypeError: ``per_token`` or one of its rows is not a sequence (a str, a number, a 0-d tensor), or
            a value is not a real number (a str, a bool, None: the message names its position, e.g.
            ``per_token[1][0]``).
        ValueError: nothing to fold, ``batch_size < 1``, fewer values than ``2 * batch_size``, or a value
            that is not finite (``nan``, ``inf``, an int beyond the float range), named by its position.

    Example:
        >>> stream_values([[0.5, 0.1, 0.0], [0.7, 0.0]], 2)  # the values of [[5, 6], [7]] and their <eos>
        tensor([[0.5000, 0.1000],
                [0.0000, 0.7000]], dtype=torch.float64)
        >>> stream_values([[0.5, float("nan")]], 1)
        Traceback (most recent call last):
        ...
        ValueError: per_token[0][1] must be a finite number, got nan
    """
    rows = row_list("per_token", per_token, "sequences of numbers")
    if len(rows) == 0:
        raise ValueError("per_token must hold at least one sentence's values, got none")
    batch_size = require_int("batch_size", batch_size, minimum=1)
    flat = [value for i, row in enumerate(rows) for value in _finite_values(f"per_token[{i}]", row)]
    width = len(flat) // batch_size
    if width < 2:
        raise ValueError(f"batch_size={shown(batch_size)} is too large for {len(flat)} values (need 2 per stream)")
    return torch.tensor(flat[: width * batch_size], dtype=torch.float64).view(batch_size, width)


def _finite_values(name: str, row: object) -> list[float]:
    """``row`` as a list of floats, each a finite real number (``finite_float``); a bad one is ``name[j]``.

    A row is a sequence (or other iterable) of Python or NumPy numbers, or a 1-D tensor or array. A bool
    is not a number here, as nowhere in the package, and a str is refused where ``float`` would parse it.
    """
    if isinstance(row, (torch.Tensor, numpy.ndarray)):
        if row.ndim != 1:
            raise TypeError(f"{name} must be a sequence of numbers or a 1-D tensor or array, got {type_text(row)}")
        row = row.tolist()
    values = row_list(name, row, "numbers")
    return [finite_float(f"{name}[{j}]", value, "a finite number") for j, value in enumerate(values)]


def _require_stream(stream: object) -> torch.Tensor:
    """``stream`` if it is a ``(B, N)`` tensor with ``N >= 2`` (what the TBPTT cutters slice).

    Raises:
        TypeError: ``stream`` is not a tensor.
        ValueError: it is a tensor of another shape.
    """
    if not isinstance(stream, torch.Tensor):
        raise TypeError(f"stream must be a (B, N) tensor, got {type_text(stream)}")
    if stream.dim() != 2 or stream.shape[1] < 2:
        raise ValueError(f"stream must have shape (B, N) with N >= 2, got {tuple(stream.shape)}")
    return stream


def tbptt_chunks(stream: torch.Tensor, chunk_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Cut a ``(B, N)`` stream into consecutive ``(inputs, targets)`` chunks of at most ``chunk_len`` steps.

    ``targets`` is ``inputs`` shifted left by one, so chunk ``i+1`` starts where chunk ``i``'s
    targets ended and a hidden state carried from chunk to chunk sees an unbroken text.

    Args:
        stream: ``(B, N)`` token ids, ``N >= 2`` (:func:`token_stream`).
        chunk_len: the most time steps in a chunk, ``>= 1``.

    Returns:
        The ``(inputs, targets)`` pairs in stream order; the last chunk may be shorter.

    Shapes:
        stream: ``(B, N)``; each chunk's inputs and targets: ``(B, w)`` with ``w <= chunk_len``.

    Raises:
        TypeError: ``stream`` is not a tensor, or ``chunk_len`` is not an int.
        ValueError: ``chunk_len < 1``, or a stream that is not ``(B, N >= 2)``.

    Example:
        >>> [(x.tolist(), y.tolist()) for x, y in tbptt_chunks(torch.tensor([[1, 2, 3, 4, 5]]), 2)]
        [([[1, 2]], [[2, 3]]), ([[3, 4]], [[4, 5]])]
    """
    chunk_len = require_int("chunk_len", chunk_len, minimum=1)
    stream = _require_stream(stream)
    steps = stream.shape[1] - 1
    return [(stream[:, i:min(i + chunk_len, steps)], stream[:, i + 1:min(i + chunk_len, steps) + 1])
            for i in range(0, steps, chunk_len)]


class TBPTTWindow(NamedTuple):
    """One update of truncated BPTT with separate cut and look-back lengths (:func:`tbptt_windows`).

    Attributes:
        inputs, targets: ``(B, w)`` slices of the stream, ``targets`` shifted left by one; ``w`` is at
            most the look-back length.
        carry: the number of steps into the window after which the state is the start state of the
            next window (0: the next window starts where this one does).
        score_from: the first scored position; the targets ``targets[:, score_from:]`` are the ones
            this update counts, and every target of the stream is counted by exactly one window.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    carry: int
    score_from: int


def tbptt_windows(stream: torch.Tensor, step: int, bptt: int) -> list[TBPTTWindow]:
    """Windows of TBPTT(step, bptt) over a ``(B, N)`` stream (Williams and Peng, 1990).

    Every ``step`` time steps (:math:`T_{\\text{step}}`) one update scores the targets of those
    steps and backpropagates through the last ``bptt`` steps (:math:`T_{\\text{bptt}} \\ge T_{\\text{step}}`).
    Update :math:`j` ends at :math:`e_j = \\min((j+1)\\,T_{\\text{step}}, N-1)`, starts at
    :math:`\\max(0, (j+1)\\,T_{\\text{step}} - T_{\\text{bptt}})`, and scores the targets after
    :math:`e_{j-1}`; so a target scored by update :math:`j` sees at least
    :math:`T_{\\text{bptt}} - T_{\\text{step}} + 1` steps of gradient history (fewer only near the
    start of the stream). ``step == bptt`` gives the
    chunks of :func:`tbptt_chunks`; a smaller ``step`` recomputes the overlap, so the forward
    cost per target grows like :math:`T_{\\text{bptt}} / T_{\\text{step}}`.

    Args:
        stream: ``(B, N)`` token ids, ``N >= 2`` (:func:`token_stream`).
        step: :math:`T_{\\text{step}} \\ge 1`, time steps between updates.
        bptt: :math:`T_{\\text{bptt}} \\ge` ``step``, time steps each update backpropagates through.

    Returns:
        The :class:`TBPTTWindow` of every update, in stream order.

    Shapes:
        stream: ``(B, N)``; each window's inputs and targets: ``(B, w)`` with ``w <= bptt``.

    Raises:
        TypeError: ``stream`` is not a tensor, or ``step`` or ``bptt`` is not an int.
        ValueError: ``step < 1``, ``bptt < step``, or a stream that is not ``(B, N >= 2)``.

    Example:
        >>> stream = torch.tensor([[10, 11, 12, 13, 14, 15, 16]])
        >>> for w in tbptt_windows(stream, 2, 4):
        ...     print(w.inputs.tolist(), w.targets[:, w.score_from:].tolist(), w.carry)
        [[10, 11]] [[11, 12]] 0
        [[10, 11, 12, 13]] [[13, 14]] 2
        [[12, 13, 14, 15]] [[15, 16]] 4
    """
    step = require_int("step", step, minimum=1)
    bptt = require_int("bptt", bptt, minimum=1)
    if bptt < step:
        raise ValueError(f"bptt must be >= step={shown(step)} (each update looks back at least over the steps it "
                         f"scores), got {shown(bptt)}")
    stream = _require_stream(stream)
    steps = stream.shape[1] - 1
    nominal = list(range(step, steps, step)) + [steps + (-steps) % step]  # the last update may score fewer
    ends = [min(end, steps) for end in nominal]
    starts = [max(0, end - bptt) for end in nominal]
    windows = []
    for j, (start, end) in enumerate(zip(starts, ends)):
        previous_end = ends[j - 1] if j else 0
        carry = starts[j + 1] - start if j + 1 < len(ends) else end - start
        windows.append(TBPTTWindow(inputs=stream[:, start:end], targets=stream[:, start + 1:end + 1],
                                   carry=carry, score_from=previous_end - start))
    return windows
