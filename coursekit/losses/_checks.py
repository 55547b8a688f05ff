"""Argument checks shared by the public loss functions.

Every public function validates its arguments once, at the boundary, through
these helpers, so that a bad input always produces a message of the same form:
the argument's name, what was received, and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def require_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def require_float(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a floating-point tensor."""
    tensor = require_tensor(name, value)
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    return tensor


def require_integer(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is an integer (not boolean) tensor."""
    tensor = require_tensor(name, value)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (e.g. torch.long), got dtype {tensor.dtype}")
    return tensor


def require_shape(name: str, tensor: torch.Tensor, expected: Sequence[int], expected_text: str) -> None:
    """Raise ``ValueError`` unless ``tensor.shape == expected``.

    ``expected_text`` says where the expected shape comes from, e.g.
    ``"logits.shape[:-1]"``.
    """
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {tuple(expected)} ({expected_text}), got {tuple(tensor.shape)}"
        )


def require_mask(name: str, mask: object, expected: Sequence[int], expected_text: str) -> torch.Tensor:
    """Return ``mask`` if it is a boolean tensor of the expected shape."""
    tensor = require_tensor(name, mask)
    if tensor.dtype != torch.bool:
        raise TypeError(f"{name} must be a boolean tensor (True = counted), got dtype {tensor.dtype}")
    require_shape(name, tensor, expected, expected_text)
    return tensor


def require_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value  # type: ignore[return-value]


def require_positive(name: str, value: float) -> float:
    """Return ``value`` if it is a finite number greater than zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (value > 0) or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def require_targets_in_range(
    name: str, targets: torch.Tensor, num_classes: int, ignore_index: int | None
) -> None:
    """Raise ``ValueError`` if a target lies outside ``[0, num_classes)`` and is not ignored."""
    valid = targets if ignore_index is None else targets[targets != ignore_index]
    if valid.numel() == 0:
        return
    low, high = int(valid.min()), int(valid.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        ignored = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(f"{name} must lie in [0, {num_classes}){ignored}, got {bad}")
