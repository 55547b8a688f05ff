"""Evaluation: per-token NLL, perplexity, bits per token, exact match, BLEU and chrF.

BLEU and chrF come from ``sacrebleu``, the standard implementation, so the
numbers are comparable with published ones; nothing here re-implements them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from coursekit.data._checks import require_int
from coursekit.data.batching import lm_batch, pad_batch
from coursekit.data.vocab import Vocab
from coursekit.losses import batch_loss, bits_per_token, perplexity, token_nll


@dataclass(frozen=True)
class LMScores:
    """Per-token scores of a language model on a corpus (``<eos>`` tokens counted).

    Attributes:
        nll: mean negative log-likelihood per token, nats.
        perplexity: :math:`e^{\\text{nll}}`.
        bits_per_token: nll / ln 2.
        num_tokens: how many tokens were scored.
    """

    nll: float
    perplexity: float
    bits_per_token: float
    num_tokens: int


def lm_scores(total_nll: float, num_tokens: int) -> LMScores:
    """:class:`LMScores` from a summed NLL and a token count.

    Example:
        >>> lm_scores(6 * math.log(2), 3)
        LMScores(nll=1.386..., perplexity=4.0..., bits_per_token=2.0, num_tokens=3)
    """
    require_int("num_tokens", num_tokens, minimum=1)
    mean = total_nll / num_tokens
    return LMScores(nll=mean, perplexity=float(perplexity(mean)), bits_per_token=float(bits_per_token(mean)),
                    num_tokens=num_tokens)


def evaluate_lm(model: nn.Module, sentences: Sequence[Sequence[int]], *, batch_size: int = 256) -> LMScores:
    """Token-mean NLL of a neural LM (``model(inputs) -> (logits, state)``) over sentences of ids.

    Args:
        model: an :class:`~coursekit.models.RNNLM` or :class:`~coursekit.models.TransformerLM`.
        sentences: id lists without ``<bos>``/``<eos>``.
        batch_size: sentences per forward pass.

    Raises:
        ValueError: no sentences.
    """
    if len(sentences) == 0:
        raise ValueError("sentences must hold at least one sentence, got an empty sequence")
    require_int("batch_size", batch_size, minimum=1)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(sentences), batch_size):
            batch = lm_batch(sentences[start:start + batch_size])
            logits, _ = model(batch.inputs)
            total += float(batch_loss(token_nll(logits.double(), batch.targets), batch.mask, reduction="sum"))
            count += batch.num_tokens
    model.train(was_training)
    return lm_scores(total, count)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of hypotheses identical to their reference (after stripping outer whitespace).

    Raises:
        ValueError: the lists are empty or of different lengths.

    Example:
        >>> exact_match(["3 1 2", "4 0"], ["3 1 2", "4 0 0"])
        0.5
    """
    _check_pairs(hypotheses, references)
    return sum(h.strip() == r.strip() for h, r in zip(hypotheses, references)) / len(references)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) by ``sacrebleu.corpus_bleu`` with one reference per hypothesis.

    Example:
        >>> round(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 1)
        100.0
    """
    import sacrebleu

    _check_pairs(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100) by ``sacrebleu.corpus_chrf``.

    Example:
        >>> round(chrf(["abc"], ["abc"]), 1)
        100.0
    """
    import sacrebleu

    _check_pairs(hypotheses, references)
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(references) == 0:
        raise ValueError("references must hold at least one reference, got an empty sequence")
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses must have one entry per reference ({len(references)}), got {len(hypotheses)}")


@dataclass(frozen=True)
class TranslationScores:
    """Exact match (fraction), BLEU and chrF (0-100) of a translation model on a test set."""

    exact_match: float
    bleu: float
    chrf: float
    hypotheses: list[str]


def translate(model: nn.Module, sources: Sequence[str], src_vocab: Vocab, tgt_vocab: Vocab, *, beam_size: int = 1,
              max_len: int = 20, batch_size: int = 256) -> list[str]:
    """Translate texts with a :class:`~coursekit.models.Seq2Seq`: greedy for ``beam_size=1``, else beam search."""
    require_int("beam_size", beam_size, minimum=1)
    if len(sources) == 0:
        raise ValueError("sources must hold at least one text, got an empty sequence")
    model.eval()
    out: list[str] = []
    for start in range(0, len(sources), batch_size):
        batch = pad_batch([src_vocab.encode(s) for s in sources[start:start + batch_size]])
        if beam_size == 1:
            result = model.greedy(batch.tokens, batch.lengths, max_len=max_len)
        else:
            result = model.beam_search(batch.tokens, batch.lengths, beam_size=beam_size, max_len=max_len)
        out += [tgt_vocab.decode(seq) for seq in result.best()]
    return out


def evaluate_translation(model: nn.Module, pairs: Sequence[tuple[str, str]], src_vocab: Vocab, tgt_vocab: Vocab,
                         *, beam_size: int = 1, max_len: int = 20) -> TranslationScores:
    """Exact match, BLEU and chrF of ``model`` on ``(source, reference)`` text pairs."""
    hypotheses = translate(model, [s for s, _ in pairs], src_vocab, tgt_vocab, beam_size=beam_size, max_len=max_len)
    references = [r for _, r in pairs]
    return TranslationScores(exact_match=exact_match(hypotheses, references), bleu=bleu(hypotheses, references),
                             chrf=chrf(hypotheses, references), hypotheses=hypotheses)
