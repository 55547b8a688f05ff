"""Boolean masks for padded batches: which positions hold real tokens, and which are the response.

A padded batch stores sequences of different lengths in one ``(B, T)`` tensor;
the mask says which positions count (True) and which are padding (False).
Every loss in :mod:`coursekit.losses` takes such a mask.
"""

from __future__ import annotations

import torch

from coursekit.losses._checks import reads_values, require_integer, require_shape


def _require_max_len(max_len: object) -> int:
    if isinstance(max_len, bool) or not isinstance(max_len, int):
        raise TypeError(f"max_len must be an int, got {type(max_len).__name__}")
    if max_len < 0:
        raise ValueError(f"max_len must be >= 0, got {max_len}")
    return max_len


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
    """Mask of the real tokens of a padded batch: :math:`m_{b,t} = [t < n_b]`.

    Args:
        lengths: the number of real tokens :math:`n_b` of each sequence (integer tensor).
        max_len: the padded length ``T``; ``None`` uses ``max(lengths)`` (0 for an
            empty batch), which reads ``lengths`` (a host synchronisation on an
            accelerator: pass ``max_len`` in a training step).

    Returns:
        A boolean tensor, True on the first ``lengths[b]`` positions of row ``b``,
        on the device of ``lengths``.

    Shapes:
        lengths: ``(B,)``; result: ``(B, max_len)``.

    Raises:
        TypeError: ``lengths`` is not an integer tensor, or ``max_len`` not an int.
        ValueError: ``lengths`` is not 1-D, holds a negative length, or a length
            greater than ``max_len``; ``max_len`` is negative. (The checks of
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

    .. math:: m_{b,t} = [\\,p_b \\le t < n_b\\,]

    so only the response is scored, e.g. ``causal_lm_loss(..., loss_mask=m,
    reduction="none")`` gives :math:`-\\log p_\\theta(y \\mid x)` per row.

    Args:
        prompt_lengths: prompt length :math:`p_b` of each row.
        lengths: total length :math:`n_b` (prompt plus response) of each row.
        max_len: the padded length ``T``; ``None`` uses ``max(lengths)``, which
            reads ``lengths`` (see :func:`sequence_mask`).

    Returns:
        A boolean tensor, True exactly on the response tokens.

    Shapes:
        prompt_lengths, lengths: ``(B,)``; result: ``(B, max_len)``.

    Raises:
        TypeError: a length tensor is not an integer tensor, or ``max_len`` not an int.
        ValueError: shapes differ, a length is negative, ``prompt_lengths > lengths``,
            or ``lengths > max_len``.

    Example:
        >>> response_mask(torch.tensor([2, 1]), torch.tensor([4, 3]), 5)
        tensor([[False, False,  True,  True, False],
                [False,  True,  True, False, False]])
    """
    prompt_lengths = _require_lengths("prompt_lengths", prompt_lengths)
    lengths = _require_lengths("lengths", lengths)
    require_shape("prompt_lengths", prompt_lengths, lengths.shape, "lengths.shape")
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
