"""A tiny encoder-decoder with attention for the translation task, and its decoders.

Encoder: a bidirectional GRU over the source. Decoder: a GRU whose input is the
previous target token and the previous attentional output ("input feeding",
Luong et al. 2015); at each step it attends over the encoder states with a
bilinear score :math:`h_t^\\top W m_s` and predicts the next token from
:math:`\\tanh(W_o[h_t; c_t])`.

Three decoders share one step function and all return the generated sequences
*and* their summed log-probabilities :math:`\\log p_\\theta(y \\mid x) = \\sum_t \\log p_\\theta(y_t \\mid y_{<t}, x)`
(under the model itself, temperature 1):

- :meth:`Seq2Seq.greedy`: the most probable token at each step;
- :meth:`Seq2Seq.beam_search`: width-``k`` beam, optional length normalisation;
- :meth:`Seq2Seq.sample`: ancestral sampling with a ``torch.Generator`` (candidate sets for MRT and REINFORCE).

A generated sequence ends with ``<eos>`` (included, with its probability) unless
``max_len`` cut it short; ``<bos>`` is never part of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from coursekit.data._checks import require_int, require_number, require_probability, require_seed
from coursekit.data.vocab import BOS_ID, EOS_ID, PAD_ID
from coursekit.losses import sequence_loss, token_nll
from coursekit.models.rnn import check_token_ids

DecoderState = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DecodeResult:
    """What every decoder returns.

    Attributes:
        sequences: ``sequences[b][j]`` is the ``j``-th output for source ``b`` (a list of ids,
            ending with ``<eos>`` unless cut at ``max_len``).
        log_probs: ``(B, n)`` summed log-probabilities of those outputs under the model.
        scores: ``(B, n)`` the scores used to rank them (``log_probs``, or length-normalised ones).
    """

    sequences: list[list[list[int]]]
    log_probs: torch.Tensor
    scores: torch.Tensor

    def best(self) -> list[list[int]]:
        """The first output of every source."""
        return [outputs[0] for outputs in self.sequences]


class Seq2Seq(nn.Module):
    """GRU encoder-decoder with bilinear attention.

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes.
        embed_dim: embedding size (both sides).
        hidden_size: decoder state size; each encoder direction has ``hidden_size // 2``.
        dropout: dropout on embeddings and attentional outputs.

    Raises:
        TypeError: a size that is not a Python or NumPy integer, or a ``dropout`` that is not a real number.
        ValueError: a size below its minimum, an odd ``hidden_size``, or a ``dropout`` that is negative,
            above 1 or not finite.

    Shapes:
        src: ``(B, S)``; src_lengths: ``(B,)``; tgt_in: ``(B, T)``; logits: ``(B, T, V_tgt)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = Seq2Seq(12, 8, embed_dim=8, hidden_size=16).eval()
        >>> src, lengths = torch.tensor([[4, 5, 6], [7, 8, 0]]), torch.tensor([3, 2])
        >>> tuple(model(src, lengths, torch.tensor([[1, 4], [1, 5]])).shape)
        (2, 2, 8)
        >>> result = model.greedy(src, lengths, max_len=4)
        >>> len(result.sequences), tuple(result.log_probs.shape)
        (2, (2, 1))
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, *, embed_dim: int = 32, hidden_size: int = 64,
                 dropout: float = 0.0) -> None:
        super().__init__()
        src_vocab_size = require_int("src_vocab_size", src_vocab_size, minimum=2)
        tgt_vocab_size = require_int("tgt_vocab_size", tgt_vocab_size, minimum=3)
        embed_dim = require_int("embed_dim", embed_dim, minimum=1)
        hidden_size = require_int("hidden_size", hidden_size, minimum=2)
        if hidden_size % 2:
            raise ValueError(f"hidden_size must be even (two encoder directions), got {hidden_size}")
        dropout = require_probability("dropout", dropout)
        self.config = {"src_vocab_size": src_vocab_size, "tgt_vocab_size": tgt_vocab_size,
                       "embed_dim": embed_dim, "hidden_size": hidden_size, "dropout": float(dropout)}
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.src_embed = nn.Embedding(src_vocab_size, embed_dim, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=PAD_ID)
        self.encoder = nn.GRU(embed_dim, hidden_size // 2, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(hidden_size, hidden_size)
        self.decoder = nn.GRUCell(embed_dim + hidden_size, hidden_size)
        self.attn = nn.Linear(hidden_size, hidden_size, bias=False)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, tgt_vocab_size)
        self.dropout = nn.Dropout(dropout)
        self.hidden_size = hidden_size

    # -- building blocks -------------------------------------------------
    def _check_source(self, src: torch.Tensor, src_lengths: torch.Tensor) -> None:
        check_token_ids("src", src, self.src_vocab_size)
        if not isinstance(src_lengths, torch.Tensor) or src_lengths.shape != (src.shape[0],):
            raise ValueError(f"src_lengths must be a tensor of shape ({src.shape[0]},), got "
                             f"{getattr(src_lengths, 'shape', type(src_lengths).__name__)}")
        if int(src_lengths.min()) < 1 or int(src_lengths.max()) > src.shape[1]:
            raise ValueError(f"src_lengths must lie in [1, {src.shape[1]}], got {src_lengths.tolist()}")

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        """Encoder states ``(B, S, H)``, the source mask ``(B, S)`` and the decoder's initial state."""
        embedded = self.dropout(self.src_embed(src))
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
        src_mask = torch.arange(src.shape[1], device=src.device).unsqueeze(0) < src_lengths.unsqueeze(1)
        hidden = torch.tanh(self.bridge(torch.cat([final[0], final[1]], dim=-1)))
        feed = torch.zeros_like(hidden)
        return memory, src_mask, (hidden, feed)

    def step(self, prev_tokens: torch.Tensor, state: DecoderState, memory: torch.Tensor,
             src_mask: torch.Tensor) -> tuple[torch.Tensor, DecoderState]:
        """One decoder step: logits ``(N, V)`` for the next token, and the new state."""
        hidden, feed = state
        hidden = self.decoder(torch.cat([self.dropout(self.tgt_embed(prev_tokens)), feed], dim=-1), hidden)
        scores = torch.einsum("nsh,nh->ns", memory, self.attn(hidden))
        weights = torch.softmax(scores.masked_fill(~src_mask, float("-inf")), dim=-1)
        context = torch.einsum("ns,nsh->nh", weights, memory)
        feed = torch.tanh(self.combine(torch.cat([hidden, context], dim=-1)))
        return self.out(self.dropout(feed)), (hidden, feed)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: position ``t`` predicts the token after ``tgt_in[:, t]``."""
        self._check_source(src, src_lengths)
        check_token_ids("tgt_in", tgt_in, self.tgt_vocab_size)
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"tgt_in must have batch size {src.shape[0]} (as src), got {tgt_in.shape[0]}")
        memory, src_mask, state = self.encode(src, src_lengths)
        steps = []
        for t in range(tgt_in.shape[1]):
            logits, state = self.step(tgt_in[:, t], state, memory, src_mask)
            steps.append(logits)
        return torch.stack(steps, dim=1)

    def forward_scheduled(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, *,
                          teacher_prob: float, generator: torch.Generator) -> torch.Tensor:
        """Logits under scheduled sampling (Bengio et al. 2015): the decoder reads a mix of reference and own tokens.

        Position 1 reads ``<bos>``. At every later position, independently for each
        row, the decoder reads the reference token ``tgt_in[:, t]`` with probability
        ``teacher_prob`` (:math:`\\psi` in chapter 8) and otherwise a token sampled from its
        own distribution at the previous position. No gradient flows through the sampled tokens.
        ``teacher_prob=1`` is :meth:`forward` (teacher forcing); ``0`` feeds back
        only the model's own samples.

        Args:
            teacher_prob: probability of reading the reference token, in ``[0, 1]``.
            generator: the random source of the coin flips and of the samples.

        Returns:
            Logits ``(B, T, V_tgt)``: position ``t`` predicts the reference token after ``tgt_in[:, t]``.

        Raises:
            ValueError: bad shapes or ids (as :meth:`forward`), or ``teacher_prob`` outside ``[0, 1]``
                or not finite.

        Example:
            >>> _ = torch.manual_seed(0)
            >>> model = Seq2Seq(12, 8, embed_dim=8, hidden_size=16).eval()
            >>> src, lengths, tgt_in = torch.tensor([[4, 5, 6]]), torch.tensor([3]), torch.tensor([[1, 4, 5]])
            >>> forced = model.forward_scheduled(src, lengths, tgt_in, teacher_prob=1.0,
            ...                                  generator=torch.Generator().manual_seed(0))
            >>> torch.equal(forced, model(src, lengths, tgt_in))
            True
        """
        self._check_source(src, src_lengths)
        check_token_ids("tgt_in", tgt_in, self.tgt_vocab_size)
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"tgt_in must have batch size {src.shape[0]} (as src), got {tgt_in.shape[0]}")
        teacher_prob = require_probability("teacher_prob", teacher_prob)
        memory, src_mask, state = self.encode(src, src_lengths)
        steps = []
        prev = tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            logits, state = self.step(prev, state, memory, src_mask)
            steps.append(logits)
            if t + 1 < tgt_in.shape[1]:
                own = torch.multinomial(torch.softmax(logits.detach().float(), dim=-1), 1, generator=generator)[:, 0]
                use_reference = torch.rand(own.shape, generator=generator, device=own.device) < teacher_prob
                prev = torch.where(use_reference, tgt_in[:, t + 1], own)
        return torch.stack(steps, dim=1)

    def sequence_log_probs(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                           tgt_out: torch.Tensor, tgt_mask: torch.Tensor) -> torch.Tensor:
        """Differentiable :math:`\\log p_\\theta(y \\mid x)` per sequence under teacher forcing, shape ``(B,)``."""
        logits = self(src, src_lengths, tgt_in)
        return -sequence_loss(token_nll(logits, tgt_out), tgt_mask, reduction="sum")

    # -- decoders ---------------------------------------------------------
    @torch.no_grad()
    def _run(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int, *,
             choose: Callable[[torch.Tensor], torch.Tensor], repeat: int = 1) -> DecodeResult:
        memory, src_mask, (hidden, feed) = self.encode(src, src_lengths)
        if repeat > 1:
            memory, src_mask = memory.repeat_interleave(repeat, 0), src_mask.repeat_interleave(repeat, 0)
            hidden, feed = hidden.repeat_interleave(repeat, 0), feed.repeat_interleave(repeat, 0)
        n = memory.shape[0]
        prev = torch.full((n,), BOS_ID, dtype=torch.long, device=src.device)
        done = torch.zeros(n, dtype=torch.bool, device=src.device)
        total = torch.zeros(n, dtype=torch.float32, device=src.device)
        outputs: list[list[int]] = [[] for _ in range(n)]
        state = (hidden, feed)
        for _ in range(max_len):
            logits, state = self.step(prev, state, memory, src_mask)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            token = choose(logits)
            total = total + torch.where(done, torch.zeros_like(total), log_probs.gather(1, token[:, None])[:, 0])
            for i in torch.nonzero(~done).flatten().tolist():
                outputs[i].append(int(token[i]))
            done = done | (token == EOS_ID)
            prev = token.masked_fill(done, PAD_ID)
            if bool(done.all()):
                break
        b = src.shape[0]
        nested = [outputs[i * repeat:(i + 1) * repeat] for i in range(b)]
        total = total.view(b, repeat)
        return DecodeResult(sequences=nested, log_probs=total, scores=total.clone())

    def greedy(self, src: torch.Tensor, src_lengths: torch.Tensor, *, max_len: int = 20) -> DecodeResult:
        """Greedy decoding: :math:`y_t = \\arg\\max_v p(v \\mid y_{<t}, x)`.

        Returns:
            A :class:`DecodeResult` with one output per source (``log_probs`` of shape ``(B, 1)``).

        Raises:
            ValueError: bad ``src``/``src_lengths``, or ``max_len < 1``.
        """
        self._check_source(src, src_lengths)
        max_len = require_int("max_len", max_len, minimum=1)
        return self._run(src, src_lengths, max_len, choose=lambda logits: logits.argmax(dim=-1))

    def sample(self, src: torch.Tensor, src_lengths: torch.Tensor, *, num_samples: int = 1, max_len: int = 20,
               temperature: float = 1.0, generator: torch.Generator | None = None, seed: int | None = None
               ) -> DecodeResult:
        """Ancestral sampling from :math:`\\operatorname{softmax}(z / T)`; log-probabilities are at temperature 1.

        Args:
            num_samples: outputs per source.
            temperature: :math:`T > 0`.
            generator: the random source; or give ``seed`` (exactly one of the two).

        Returns:
            A :class:`DecodeResult` with ``num_samples`` outputs per source (duplicates possible).

        Raises:
            ValueError: bad sizes, ``temperature <= 0`` or not finite, or neither/both of ``generator``
                and ``seed``.
        """
        self._check_source(src, src_lengths)
        num_samples = require_int("num_samples", num_samples, minimum=1)
        max_len = require_int("max_len", max_len, minimum=1)
        temperature = require_number("temperature", temperature, low=0.0, low_inclusive=False)
        if (generator is None) == (seed is None):
            raise ValueError("give exactly one of generator= and seed= (sampling needs a seeded source)")
        if generator is None:
            generator = torch.Generator(device=src.device).manual_seed(require_seed("seed", seed))

        def choose(logits: torch.Tensor) -> torch.Tensor:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            return torch.multinomial(probs, 1, generator=generator)[:, 0]

        return self._run(src, src_lengths, max_len, repeat=num_samples, choose=choose)

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, src_lengths: torch.Tensor, *, beam_size: int = 4, max_len: int = 20,
                    length_penalty: float = 0.0, num_return: int = 1) -> DecodeResult:
        """Beam search of width ``k`` for every source.

        Hypotheses are ranked by :math:`\\log p(y \\mid x) / |y|^{\\alpha}` with
        :math:`\\alpha` = ``length_penalty`` (0: raw log-probability, which favours
        short outputs; 1: per-token average). A hypothesis that ends with ``<eos>``
        among the ``k`` best candidates of a step is finished; the search stops when
        ``k`` hypotheses are finished or after ``max_len`` steps. With ``k = 1`` it is
        exactly greedy decoding.

        Args:
            beam_size: :math:`k \\ge 1`.
            max_len: longest output.
            length_penalty: :math:`\\alpha \\ge 0`.
            num_return: how many of the best hypotheses to return per source (``<= beam_size``).

        Returns:
            A :class:`DecodeResult`; ``log_probs`` are the raw sums, ``scores`` the ranking scores.

        Raises:
            ValueError: bad sizes, ``num_return > beam_size``, or a ``length_penalty`` that is negative or
                not finite.
        """
        self._check_source(src, src_lengths)
        beam_size = require_int("beam_size", beam_size, minimum=1)
        max_len = require_int("max_len", max_len, minimum=1)
        num_return = require_int("num_return", num_return, minimum=1)
        if num_return > beam_size:
            raise ValueError(f"num_return must be <= beam_size={beam_size}, got {num_return}")
        alpha = require_number("length_penalty", length_penalty, low=0.0)
        sequences, log_probs, scores = [], [], []
        for b in range(src.shape[0]):
            length = int(src_lengths[b])
            found = self._beam_one(src[b:b + 1, :length], src_lengths[b:b + 1], beam_size, max_len, alpha)
            found = found[:num_return]
            sequences.append([tokens for tokens, _, _ in found])
            log_probs.append([lp for _, lp, _ in found])
            scores.append([sc for _, _, sc in found])
        return DecodeResult(sequences=sequences, log_probs=torch.tensor(log_probs), scores=torch.tensor(scores))

    def _beam_one(self, src: torch.Tensor, src_lengths: torch.Tensor, k: int, max_len: int,
                  alpha: float) -> list[tuple[list[int], float, float]]:
        def score(log_prob: float, length: int) -> float:
            return log_prob / (length ** alpha) if alpha > 0 else log_prob

        memory, src_mask, state = self.encode(src, src_lengths)
        alive: list[list[int]] = [[]]
        alive_lp = torch.zeros(1)
        finished: list[tuple[list[int], float, float]] = []
        for _ in range(max_len):
            n = len(alive)
            prev = torch.tensor([seq[-1] if seq else BOS_ID for seq in alive], dtype=torch.long, device=src.device)
            logits, state = self.step(prev, state, memory.expand(n, -1, -1), src_mask.expand(n, -1))
            total = (alive_lp[:, None] + torch.log_softmax(logits.float(), dim=-1).cpu()).flatten()
            top_lp, top_index = total.topk(min(2 * k, total.numel()))
            vocab = logits.shape[-1]
            keep_rows, keep_tokens, keep_lp = [], [], []
            for rank, (lp, index) in enumerate(zip(top_lp.tolist(), top_index.tolist())):
                row, token = divmod(index, vocab)
                if token == EOS_ID:
                    if rank < k:
                        tokens = alive[row] + [token]
                        finished.append((tokens, lp, score(lp, len(tokens))))
                elif len(keep_rows) < k:
                    keep_rows.append(row)
                    keep_tokens.append(token)
                    keep_lp.append(lp)
                if len(keep_rows) == k and rank >= k - 1:
                    break
            if not keep_rows:
                alive = []
                break
            if len(finished) >= k:
                break
            rows = torch.tensor(keep_rows, dtype=torch.long, device=src.device)
            state = (state[0][rows], state[1][rows])
            alive = [alive[r] + [t] for r, t in zip(keep_rows, keep_tokens)]
            alive_lp = torch.tensor(keep_lp)
        if len(finished) < k:
            finished += [(seq, lp, score(lp, len(seq))) for seq, lp in zip(alive, alive_lp.tolist())]
        return sorted(finished, key=lambda item: -item[2])
