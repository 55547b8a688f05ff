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

from coursekit.data._checks import require_int, require_one_of, require_probability
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

    Raises:
        TypeError: a size that is not a Python or NumPy integer, or a ``dropout`` that is not a real number.
        ValueError: a size below its minimum, an unknown ``cell``, or a ``dropout`` that is negative,
            above 1 or not finite.

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
        vocab_size = require_int("vocab_size", vocab_size, minimum=2)
        embed_dim = require_int("embed_dim", embed_dim, minimum=1)
        hidden_size = require_int("hidden_size", hidden_size, minimum=1)
        num_layers = require_int("num_layers", num_layers, minimum=1)
        cell = require_one_of("cell", cell, CELLS)
        dropout = require_probability("dropout", dropout)
        self.config = {"vocab_size": vocab_size, "embed_dim": embed_dim, "hidden_size": hidden_size,
                       "num_layers": num_layers, "cell": cell, "dropout": float(dropout)}
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        recurrent = {"elman": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = recurrent(embed_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, input_ids: torch.Tensor, hidden: Hidden | None = None, *,
                reset: torch.Tensor | None = None) -> tuple[torch.Tensor, Hidden]:
        """Per-step logits and the final hidden state.

        Args:
            input_ids: ``(B, T)`` token ids.
            hidden: the state to start from (``None``: zeros), e.g. the previous chunk's.
            reset: optional ``(B, T)`` bool: where True, the row's state is set to zeros *before*
                the token at that step is read (a document boundary in a packed stream), so no
                value and no gradient crosses it.

        Returns:
            ``(logits (B, T, V), hidden)``.

        Raises:
            TypeError, ValueError: bad ``input_ids``, or a ``reset`` that is not a bool tensor of
                the shape of ``input_ids``.
        """
        check_token_ids("input_ids", input_ids, self.vocab_size)
        embedded = self.dropout(self.embed(input_ids))
        if reset is None:
            outputs, hidden = self.rnn(embedded, hidden)
        else:
            if not isinstance(reset, torch.Tensor) or reset.dtype != torch.bool or reset.shape != input_ids.shape:
                raise ValueError(f"reset must be a bool tensor of shape {tuple(input_ids.shape)} (as input_ids), "
                                 f"got {getattr(reset, 'dtype', type(reset).__name__)} "
                                 f"{tuple(getattr(reset, 'shape', ()))}")
            outputs, hidden = self._run_with_resets(embedded, hidden, reset)
        return self.out(self.dropout(outputs)), hidden

    def _run_with_resets(self, embedded: torch.Tensor, hidden: Hidden | None,
                         reset: torch.Tensor) -> tuple[torch.Tensor, Hidden]:
        """The recurrence in pieces, cut at every step where some row starts afresh."""
        steps = embedded.shape[1]
        cuts = sorted({0, steps, *torch.nonzero(reset.any(dim=0)).flatten().tolist()})
        pieces = []
        for begin, end in zip(cuts, cuts[1:]):
            if hidden is not None and bool(reset[:, begin].any()):
                hidden = _zero_rows(hidden, reset[:, begin])
            outputs, hidden = self.rnn(embedded[:, begin:end], hidden)
            pieces.append(outputs)
        return torch.cat(pieces, dim=1), hidden


def _zero_rows(hidden: Hidden, rows: torch.Tensor) -> Hidden:
    """The state with the chosen batch rows set to zero (a product, so the other rows keep their graph)."""
    keep = (~rows).to(hidden[0].dtype if isinstance(hidden, tuple) else hidden.dtype)[None, :, None]
    if isinstance(hidden, tuple):
        return tuple(h * keep for h in hidden)  # type: ignore[return-value]
    return hidden * keep
