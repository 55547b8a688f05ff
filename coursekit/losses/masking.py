"""Boolean masks for padded batches: which positions hold real tokens, and which are the response.

A padded batch stores sequences of different lengths in one ``(B, T)`` tensor;
the mask says which positions count (True) and which are padding (False).
Most losses in :mod:`coursekit.losses` take such a mask; the cross-entropies
of class indices (``token_nll``, ``label_smoothed_nll``, ``confidence_penalty_nll``,
``chunked_cross_entropy``, ``vocab_parallel_cross_entropy``) mark the positions
to skip with ``ignore_index`` in the targets instead, and ``causal_lm_loss``
takes both (a position counts only where the mask is True and the label is
not ``ignore_index``).
"""

from __future__ import annotations

import torch

from coursekit.losses._checks import (
    reads_values,
    require_int,
    require_integer,
    require_mask,
    require_same_devices,
    require_shape,
)


def _require_max_len(max_len: object) -> int:
    return require_int("max_len", max_len, 0, expected="be >= 0")


def _require_lengths(name: str, lengths: object) -> torch.Tensor:
    tensor = require_integer(name, lengths)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D with one length per sequence (B,), got shape {tuple(tensor.shape)}")
    if tensor.numel() and reads_values(tensor) and int(tensor.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(tensor.min())}")
    return tensor


def _require_fits(name: str, lengths: torch.Tensor, max_len: int) -> None:
    if lengths.numel() and reads_values(lengths) and int(lengths.max()) > max_len:
        raise ValueError(
            f"{name} must be <= max_len={max_len} (the padded time axis), got a length of {int(lengths.max())}"
        )


def sequence_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Mask of the real tokens of a padded batch: :math:`m_{b,t} = [t \\le T_b]` (positions :math:`t` from 1).

    Args:
        lengths: the number of real tokens :math:`T_b` of each sequence (integer tensor).
        max_len: the padded length ``T``; ``None`` uses ``max(lengths)`` (0 for an
            empty batch), which reads ``lengths`` (a host synchronisation on an
            accelerator: pass ``max_len`` in a training step).

    Returns:
        A boolean tensor, True on the first ``lengths[b]`` positions of row ``b``,
        on the device of ``lengths``.

    Shapes:
        lengths: ``(B,)``; result: ``(B, max_len)``.

    Raises:
        TypeError: ``lengths`` is not an integer tensor, or ``max_len`` not an integer (``operator.index`` fails) or a bool.
        ValueError: ``lengths`` is not 1-D, holds a negative length, or a length
            greater than ``max_len``; ``max_len`` is negative or beyond int64. (The checks of
            the lengths' values run where reading them costs nothing; see
            :mod:`coursekit.losses`.)

    Example:
        >>> sequence_mask(torch.tensor([4, 2]), 5)
        tensor([[ True,  True,  True,  True, False],
                [ True,  True, False, False, False]])
    """
    lengths = _require_lengths("lengths", lengths)
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    max_len = _require_max_len(max_len)
    _require_fits("lengths", lengths, max_len)
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def response_mask(prompt_lengths: torch.Tensor, lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Mask of the response tokens of prompt-plus-response sequences.

    Row ``b`` holds a prompt :math:`x` of ``prompt_lengths[b]`` tokens followed
    by a response :math:`y`, ``lengths[b]`` tokens in all, then padding:

    .. math:: m_{b,t} = [\\,T_x < t \\le T_x + T_y\\,]

    with :math:`T_x` and :math:`T_y` the lengths of row :math:`b`'s prompt and
    response (positions :math:`t` from 1), so only the response is scored, e.g. ``causal_lm_loss(..., loss_mask=m,
    reduction="none")`` gives :math:`-\\log p_\\theta(y \\mid x)` per row (the prompt must hold at least one
    token, a BOS if nothing else: the first token of a row is never predicted).

    Args:
        prompt_lengths: prompt length :math:`T_x` of each row.
        lengths: total length :math:`T_b = T_x + T_y` (prompt plus response) of each row.
        max_len: the padded length ``T``; ``None`` uses ``max(lengths)``, which
            reads ``lengths`` (see :func:`sequence_mask`).

    Returns:
        A boolean tensor, True exactly on the response tokens.

    Shapes:
        prompt_lengths, lengths: ``(B,)``; result: ``(B, max_len)``.

    Raises:
        TypeError: a length tensor is not an integer tensor, or ``max_len`` not an integer (``operator.index`` fails) or a bool.
        ValueError: the lengths are not 1-D or their shapes differ, a length is negative,
            ``prompt_lengths > lengths``, or ``lengths > max_len``; ``max_len`` is negative or beyond int64. (The checks of
            the lengths' values run where reading them costs nothing; see
            :mod:`coursekit.losses`.) Tensor arguments on two devices.

    Example:
        >>> response_mask(torch.tensor([2, 1]), torch.tensor([4, 3]), 5)
        tensor([[False, False,  True,  True, False],
                [False,  True,  True, False, False]])
    """
    prompt_lengths = _require_lengths("prompt_lengths", prompt_lengths)
    lengths = _require_lengths("lengths", lengths)
    require_shape("prompt_lengths", prompt_lengths, lengths.shape, "lengths.shape")
    require_same_devices("lengths", lengths, prompt_lengths=prompt_lengths)
    if reads_values(lengths) and bool((prompt_lengths > lengths).any()):
        row = int((prompt_lengths > lengths).nonzero()[0, 0])
        raise ValueError(
            f"prompt_lengths must be <= lengths, got prompt_lengths[{row}]={int(prompt_lengths[row])} "
            f"> lengths[{row}]={int(lengths[row])}"
        )
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    max_len = _require_max_len(max_len)
    _require_fits("lengths", lengths, max_len)
    positions = torch.arange(max_len, device=lengths.device).unsqueeze(0)
    return (positions >= prompt_lengths.unsqueeze(1)) & (positions < lengths.unsqueeze(1))


def turn_mask(turn_lengths: torch.Tensor, scored_turns: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Loss mask of conversations: True on the tokens of the scored turns (for instance the assistant's).

    Row :math:`b` holds the turns of one conversation one after another, then
    padding: turn :math:`j` occupies the :math:`n_{b,j}` positions that start
    after the turns before it. With :math:`\\operatorname{turn}(t)` the turn that
    position :math:`t` belongs to,

    .. math::

        m_{b,t} = [\\,\\text{turn } \\operatorname{turn}(t) \\text{ of row } b \\text{ is scored}\\,],

    and padding is never scored. A turn's length should include the tokens the
    model must learn to produce at its end (the end-of-turn token of an
    assistant turn), or the model never learns to end a turn. Pass the mask
    to ``causal_lm_loss(..., loss_mask=m)`` (it is in the coordinates of the
    input tokens): the loss then scores every token of the scored turns,
    given everything before it, in one forward pass (with its default
    ``"token_mean"``, the mean of :math:`-\\log p_\\theta` over those tokens; a
    row's first token is never scored, as nothing predicts it). Rows with fewer turns pad
    ``turn_lengths`` with zeros.

    Args:
        turn_lengths: the number of tokens :math:`n_{b,j}` of each turn (>= 0).
        scored_turns: True (or 1) for the turns whose tokens are scored,
            boolean or integer 0/1.
        max_len: the padded length ``T``; ``None`` uses the longest row, which
            reads ``turn_lengths`` (see :func:`sequence_mask`).

    Returns:
        A boolean tensor, True exactly on the tokens of the scored turns.

    Shapes:
        turn_lengths, scored_turns: ``(B, J)``; result: ``(B, max_len)``.

    Raises:
        TypeError: ``turn_lengths`` not an integer tensor, ``scored_turns``
            neither boolean nor integer, or ``max_len`` not an integer (``operator.index`` fails) or a bool.
        ValueError: the two are not 2-D of one shape, a length is negative,
            ``scored_turns`` holds a value other than 0 and 1, a row is
            longer than ``max_len``, or ``max_len`` is negative or beyond int64 (value checks run where reading the
            values costs nothing; see :mod:`coursekit.losses`). Tensor arguments on two devices.

    Example:
        >>> lengths = torch.tensor([[3, 2, 2, 1], [2, 3, 0, 0]])    # user, assistant, user, assistant
        >>> assistant = torch.tensor([[False, True, False, True], [False, True, False, False]])
        >>> turn_mask(lengths, assistant).int()
        tensor([[0, 0, 0, 1, 1, 0, 0, 1],
                [0, 0, 1, 1, 1, 0, 0, 0]], dtype=torch.int32)
    """
    turn_lengths = require_integer("turn_lengths", turn_lengths)
    if turn_lengths.dim() != 2:
        raise ValueError(f"turn_lengths must be 2-D with one length per turn (B, J), got shape {tuple(turn_lengths.shape)}")
    require_same_devices("turn_lengths", turn_lengths, scored_turns=scored_turns)
    scored_turns = require_mask("scored_turns", scored_turns, turn_lengths.shape, "turn_lengths.shape")
    if turn_lengths.numel() and reads_values(turn_lengths) and int(turn_lengths.min()) < 0:
        raise ValueError(f"turn_lengths must be >= 0, got {int(turn_lengths.min())}")
    ends = turn_lengths.cumsum(dim=-1)
    row_lengths = ends[:, -1] if turn_lengths.shape[1] else turn_lengths.new_zeros(turn_lengths.shape[0])
    if max_len is None:
        max_len = int(row_lengths.max()) if row_lengths.numel() else 0
    max_len = _require_max_len(max_len)
    _require_fits("the total of turn_lengths in a row", row_lengths, max_len)
    positions = torch.arange(max_len, device=turn_lengths.device)
    starts = ends - turn_lengths
    inside = (positions >= starts.unsqueeze(-1)) & (positions < ends.unsqueeze(-1))     # (B, J, T)
    return (inside & scored_turns.unsqueeze(-1)).any(dim=1)
