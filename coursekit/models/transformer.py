"""A tiny decoder-only Transformer language model.

Pre-norm blocks of causal self-attention and a feed-forward layer. Position
information is either learned (one embedding per position) or the fixed
sinusoids of Vaswani et al. (2017). The causal mask lets position :math:`t`
attend to positions :math:`\\le t` only, so the logits at :math:`t` predict token
:math:`t+1` from the prefix, exactly as an RNN's do.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from coursekit.data._checks import require_int, require_one_of, require_probability
from coursekit.data.vocab import PAD_ID
from coursekit.models.rnn import check_token_ids

POSITIONS = ("learned", "sinusoidal")


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    """The fixed position encodings :math:`PE_{p,2i} = \\sin(p / 10000^{2i/d})`, :math:`PE_{p,2i+1} = \\cos(\\cdot)`.

    Shapes:
        result: ``(max_len, d_model)``.

    Example:
        >>> sinusoidal_positions(3, 4)[0].tolist()
        [0.0, 1.0, 0.0, 1.0]
    """
    max_len = require_int("max_len", max_len, minimum=1)
    d_model = require_int("d_model", d_model, minimum=1)
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : d_model // 2]
    return table


def causal_mask(length: int) -> torch.Tensor:
    """Boolean ``(length, length)`` mask, True where attention is *forbidden* (the future).

    Example:
        >>> causal_mask(3).int().tolist()
        [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    """
    return torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)


class TransformerLM(nn.Module):
    """A decoder-only Transformer LM.

    Args:
        vocab_size: :math:`V`.
        d_model: width of the residual stream.
        num_heads: attention heads (must divide ``d_model``).
        num_layers: blocks.
        d_ff: width of the feed-forward layer.
        max_len: longest input.
        positions: ``"learned"`` or ``"sinusoidal"``.
        dropout: dropout rate.

    Raises:
        TypeError: a size that is not a Python or NumPy integer, or a ``dropout`` that is not a real number.
        ValueError: a size below its minimum, ``num_heads`` not dividing ``d_model``, an unknown
            ``positions``, or a ``dropout`` that is negative, above 1 or not finite.

    Shapes:
        input_ids: ``(B, T)`` with ``T <= max_len``; logits: ``(B, T, V)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = TransformerLM(vocab_size=10, d_model=16, num_heads=2, num_layers=1, max_len=8)
        >>> logits, _ = model(torch.tensor([[1, 4, 5]]))
        >>> tuple(logits.shape)
        (1, 3, 10)
    """

    def __init__(self, vocab_size: int, *, d_model: int = 64, num_heads: int = 4, num_layers: int = 2,
                 d_ff: int = 128, max_len: int = 64, positions: str = "learned", dropout: float = 0.0) -> None:
        super().__init__()
        vocab_size = require_int("vocab_size", vocab_size, minimum=2)
        d_model = require_int("d_model", d_model, minimum=1)
        num_heads = require_int("num_heads", num_heads, minimum=1)
        if d_model % num_heads:
            raise ValueError(f"num_heads must divide d_model={d_model}, got {num_heads}")
        num_layers = require_int("num_layers", num_layers, minimum=1)
        d_ff = require_int("d_ff", d_ff, minimum=1)
        max_len = require_int("max_len", max_len, minimum=1)
        positions = require_one_of("positions", positions, POSITIONS)
        dropout = require_probability("dropout", dropout)
        self.config = {"vocab_size": vocab_size, "d_model": d_model, "num_heads": num_heads,
                       "num_layers": num_layers, "d_ff": d_ff, "max_len": max_len, "positions": positions,
                       "dropout": float(dropout)}
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        if positions == "learned":
            self.position = nn.Embedding(max_len, d_model)
        else:
            self.register_buffer("sinusoids", sinusoidal_positions(max_len, d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward=d_ff, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)
        self.scale = math.sqrt(d_model)

    def forward(self, input_ids: torch.Tensor, hidden: None = None) -> tuple[torch.Tensor, None]:
        """Logits at every position (the ``hidden`` slot is ``None``, for the same call shape as :class:`RNNLM`).

        Raises:
            ValueError: ``input_ids`` longer than ``max_len``.
        """
        check_token_ids("input_ids", input_ids, self.vocab_size)
        length = input_ids.shape[1]
        if length > self.max_len:
            raise ValueError(f"input_ids must have at most max_len={self.max_len} steps, got {length}")
        if self.config["positions"] == "learned":
            pos = self.position(torch.arange(length, device=input_ids.device))
        else:
            pos = self.sinusoids[:length]
        x = self.embed(input_ids) * self.scale + pos
        x = self.blocks(x, mask=causal_mask(length).to(input_ids.device), is_causal=True)
        return self.out(self.norm(x)), None
