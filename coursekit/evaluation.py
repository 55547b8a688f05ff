"""Evaluation: per-token NLL, perplexity, bits per token, exact match, BLEU and chrF.

BLEU and chrF come from ``sacrebleu``, the standard implementation, so the
numbers are comparable with published ones; nothing here re-implements them.
:func:`paired_bootstrap` tests whether one system's per-sentence scores beat
another's on the same test set (Koehn, 2004).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from coursekit.data._checks import require_int, require_number, require_seed
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


@dataclass(frozen=True)
class PairedBootstrap:
    """The result of :func:`paired_bootstrap`.

    Attributes:
        difference: mean score of system A minus mean score of system B on the whole test set.
        p_value: the fraction of resampled test sets on which A does not beat B.
        interval: the central ``confidence`` percentile interval of the resampled differences.
        num_resamples: how many test sets were resampled (:math:`I`).
    """

    difference: float
    p_value: float
    interval: tuple[float, float]
    num_resamples: int


def paired_bootstrap(scores_a: Sequence[float], scores_b: Sequence[float], *, num_resamples: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> PairedBootstrap:
    """Koehn's (2004) paired bootstrap test: does system A beat system B on this test set?

    Draw :math:`I` test sets of the same size from the sentences, with replacement, the
    same sentences for both systems (that is the pairing), and count how often A's mean
    score fails to beat B's:

    .. math::

        \\text{p-value} = \\frac{1}{I} \\sum_{i=1}^{I}
        \\Bigl[\\frac{1}{n} \\sum_{j=1}^{n} \\bigl(a_{n^{(i)}_j} - b_{n^{(i)}_j}\\bigr) \\le 0\\Bigr]

    with :math:`n^{(i)}_1, \\dots, n^{(i)}_n` drawn uniformly from the :math:`n` sentences.
    A small p-value says that A's advantage would survive another draw of test sentences
    like these; it says nothing about another training run of either system. The score of
    a sentence is any number whose mean is the test-set metric (1.0 or 0.0 for exact match).

    Args:
        scores_a, scores_b: the per-sentence scores of the two systems, in the same sentence order.
        num_resamples: :math:`I`, the number of resampled test sets (Koehn used 1000).
        seed: seeds the resampling, so the result is reproducible.
        confidence: the coverage of ``interval``, in ``(0, 1)``.

    Returns:
        A :class:`PairedBootstrap`.

    Shapes:
        scores_a, scores_b: ``(n,)`` with ``n >= 1``.

    Raises:
        ValueError: empty or unequal score lists, a score that is not finite, ``num_resamples < 1``,
            a negative seed, ``confidence`` outside ``(0, 1)``.

    Example:
        >>> a = [1.0] * 90 + [0.0] * 10        # system A: 90 of 100 sentences right
        >>> b = [1.0] * 80 + [0.0] * 20        # system B: 80, all of them among A's 90
        >>> result = paired_bootstrap(a, b)
        >>> round(result.difference, 2), result.p_value
        (0.1, 0.0)
        >>> paired_bootstrap(b, a).p_value
        1.0
    """
    require_int("num_resamples", num_resamples, minimum=1)
    require_seed("seed", seed)
    require_number("confidence", confidence, low=0.0, low_inclusive=False)
    if not confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if len(scores_a) == 0:
        raise ValueError("scores_a must hold at least one score, got an empty sequence")
    if len(scores_b) != len(scores_a):
        raise ValueError(
            f"scores_b must have one score per sentence of scores_a ({len(scores_a)}), got {len(scores_b)}"
        )
    per_sentence = torch.as_tensor([float(x) for x in scores_a], dtype=torch.float64) - torch.as_tensor(
        [float(x) for x in scores_b], dtype=torch.float64)
    if not bool(torch.isfinite(per_sentence).all()):
        raise ValueError("scores_a and scores_b must hold finite numbers only")
    # [book ch11 excerpt start] chapter 11 shows the lines from here to the end marker.
    n = per_sentence.numel()  # per_sentence[k]: score of A minus score of B on sentence k
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (num_resamples, n), generator=generator)  # I test sets of n sentences
    resampled = per_sentence[draws].mean(dim=1)  # A's mean minus B's mean on each test set
    p_value = float((resampled <= 0).double().mean())  # how often A fails to beat B
    tail = (1 - confidence) / 2
    low, high = torch.quantile(resampled, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    # [book ch11 excerpt end]
    return PairedBootstrap(difference=float(per_sentence.mean()), p_value=p_value, interval=(low, high),
                           num_resamples=num_resamples)
