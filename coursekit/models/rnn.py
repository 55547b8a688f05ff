"""Recurrent language models: Elman, GRU and LSTM, with per-step logits.

:meth:`RNNLM.forward` returns the logits of every step together with the final
hidden state, so the book can plot the loss at each position, and truncated
backpropagation through time can carry the state from one chunk to the next
(:func:`detach_hidden` cuts the graph between chunks).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from coursekit.data._checks import require_int, require_number, require_one_of
from coursekit.data.vocab import PAD_ID

Hidden = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]
CELLS = ("elman", "gru", "lstm")


def detach_hidden(hidden: Hidden | None) -> Hidden | None:
    """Cut the autograd graph behind a hidden state (truncated BPTT), keeping its values."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)  # type: ignore[return-value]
    return hidden.detach()


def check_token_ids(name: str, ids: object, vocab_size: int) -> torch.Tensor:
    """Validate a ``(B, T)`` long tensor of ids in ``[0, vocab_size)`` with ``B, T >= 1``."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must have dtype torch.long, got {ids.dtype}")
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} must have shape (B, T) with B, T >= 1, got {tuple(ids.shape)}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} must hold ids in [0, {vocab_size}), got {low if low < 0 else high}")
    return ids


class RNNLM(nn.Module):
    """A recurrent language model: embedding, recurrent layers, linear read-out.

    Args:
        vocab_size: :math:`V`.
        embed_dim: size of the token embeddings.
        hidden_size: size of the recurrent state.
        num_layers: stacked recurrent layers.
        cell: ``"elman"`` (tanh RNN), ``"gru"`` or ``"lstm"``.
        dropout: dropout on embeddings and outputs (0 to disable).

    Shapes:
        input_ids: ``(B, T)`` long; logits: ``(B, T, V)``; hidden: ``(num_layers, B, hidden_size)``
        (a pair of them for the LSTM).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = RNNLM(vocab_size=10, embed_dim=8, hidden_size=16, cell="gru")
        >>> logits, hidden = model(torch.tensor([[1, 4, 5]]))
        >>> tuple(logits.shape), tuple(hidden.shape)
        ((1, 3, 10), (1, 1, 16))
    """

    def __init__(self, vocab_size: int, *, embed_dim: int = 32, hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "gru", dropout: float = 0.0) -> None:
        super().__init__()
        require_int("vocab_size", vocab_size, minimum=2)
        require_int("embed_dim", embed_dim, minimum=1)
        require_int("hidden_size", hidden_size, minimum=1)
        require_int("num_layers", num_layers, minimum=1)
        require_one_of("cell", cell, CELLS)
        require_number("dropout", dropout, low=0.0)
        self.config = {"vocab_size": vocab_size, "embed_dim": embed_dim, "hidden_size": hidden_size,
                       "num_layers": num_layers, "cell": cell, "dropout": float(dropout)}
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        recurrent = {"elman": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = recurrent(embed_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, input_ids: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """Per-step logits and the final hidden state.

        Args:
            input_ids: ``(B, T)`` token ids.
            hidden: the state to start from (``None``: zeros), e.g. the previous chunk's.

        Returns:
            ``(logits (B, T, V), hidden)``.
        """
        check_token_ids("input_ids", input_ids, self.vocab_size)
        outputs, hidden = self.rnn(self.dropout(self.embed(input_ids)), hidden)
        return self.out(self.dropout(outputs)), hidden
