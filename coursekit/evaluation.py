"""Evaluation: per-token NLL, perplexity, bits per token, exact match, BLEU, chrF and label error rate.

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

from coursekit.data._checks import require_int, require_number, require_one_of, require_seed
from coursekit.data.batching import lm_batch, pad_batch
from coursekit.data.frames import FRAME_BLANK, FrameExample, frame_batch
from coursekit.data.vocab import Vocab
from coursekit.losses import batch_loss, bits_per_token, perplexity, token_nll
from coursekit.models.ctc import ctc_best_path, ctc_prefix_beam_search


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
    num_tokens = require_int("num_tokens", num_tokens, minimum=1)
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
    batch_size = require_int("batch_size", batch_size, minimum=1)
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


def edit_distance(hypothesis: Sequence[object], reference: Sequence[object]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn one sequence into the other.

    Example:
        >>> edit_distance([1, 2, 3], [1, 3]), edit_distance("kitten", "sitting")
        (1, 3)
    """
    previous = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, start=1):
        current = [i]
        for j, r in enumerate(reference, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1]


def unigram_overlap(hypothesis: Sequence[object], reference: Sequence[object], *, clipped: bool = True) -> float:
    """Matched tokens of the hypothesis over the reference's length: a recall-like overlap reward.

    For a hypothesis :math:`\\hat y` and a reference :math:`y^*` of :math:`T` tokens,
    with :math:`\\#_y(k)` the number of times token :math:`k` occurs in :math:`y`,

    .. math::

        r_{\\text{overlap}}(\\hat y) = \\frac{1}{T} \\sum_{t} \\bigl[\\hat y_t \\in y^*\\bigr]
        \\quad (\\texttt{clipped=False}), \\qquad
        \\frac{1}{T} \\sum_{k} \\min\\bigl(\\#_{\\hat y}(k), \\#_{y^*}(k)\\bigr)
        \\quad (\\texttt{clipped=True}).

    With ``clipped=True`` a token counts at most as often as it occurs in the
    reference (BLEU's clipped counts, Papineni et al. 2002), so the value lies in
    :math:`[0, 1]` and only an output that holds every reference token scores 1.
    With ``clipped=False`` every hypothesis token that occurs anywhere in the
    reference counts, so repeating a reference token raises the score without
    bound: a reward that can be gamed.

    Args:
        hypothesis: the output's tokens.
        reference: the reference's tokens.
        clipped: count a token at most as often as in the reference.

    Returns:
        The overlap, in :math:`[0, 1]` when clipped.

    Shapes:
        hypothesis: any length; reference: :math:`T \\ge 1` tokens.

    Raises:
        ValueError: an empty reference.

    Example:
        >>> unigram_overlap([4, 0, 0], [4, 0, 0]), unigram_overlap([0, 0, 0, 0, 0, 0], [4, 0, 0])
        (1.0, 0.6666666666666666)
        >>> unigram_overlap([0, 0, 0, 0, 0, 0], [4, 0, 0], clipped=False)
        2.0
    """
    if len(reference) == 0:
        raise ValueError("reference must hold at least one token, got an empty sequence")
    if not clipped:
        present = set(reference)
        return sum(token in present for token in hypothesis) / len(reference)
    remaining: dict[object, int] = {}
    for token in reference:
        remaining[token] = remaining.get(token, 0) + 1
    matched = 0
    for token in hypothesis:
        if remaining.get(token, 0) > 0:
            remaining[token] -= 1
            matched += 1
    return matched / len(reference)


def label_error_rate(hypotheses: Sequence[Sequence[object]], references: Sequence[Sequence[object]]) -> float:
    """Summed edit distance over summed reference length (the word or label error rate of speech recognition).

    It can exceed 1 when hypotheses hold many insertions.

    Raises:
        ValueError: the lists are empty or of different lengths, or every reference is empty.

    Example:
        >>> label_error_rate([[1, 2], [3]], [[1, 2, 2], [3]])    # one deletion over four labels
        0.25
    """
    _check_pairs(hypotheses, references)  # type: ignore[arg-type]
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("references must hold at least one label in total, got only empty references")
    return sum(edit_distance(h, r) for h, r in zip(hypotheses, references)) / total


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(references) == 0:
        raise ValueError("references must hold at least one reference, got an empty sequence")
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses must have one entry per reference ({len(references)}), got {len(hypotheses)}")


@dataclass(frozen=True)
class CTCScores:
    """Label error rate and exact match (fractions) of a CTC recogniser, with its outputs."""

    label_error_rate: float
    exact_match: float
    hypotheses: list[list[int]]


def evaluate_ctc(model: nn.Module, examples: Sequence[FrameExample], *, decoder: str = "best_path",
                 beam_size: int = 8) -> CTCScores:
    """Decode every utterance with :func:`~coursekit.models.ctc_best_path` or
    :func:`~coursekit.models.ctc_prefix_beam_search` and score the outputs against the labels.

    Args:
        model: maps ``(features, input_lengths)`` to ``(B, T, V)`` log-probabilities.
        examples: the utterances.
        decoder: ``"best_path"`` or ``"prefix_beam"``.
        beam_size: prefixes kept by the beam search.

    Raises:
        ValueError: no examples, or an unknown decoder.
    """
    decoder = require_one_of("decoder", decoder, ("best_path", "prefix_beam"))
    if len(examples) == 0:
        raise ValueError("examples must hold at least one utterance, got an empty sequence")
    batch = frame_batch(examples)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        log_probs = model(batch.features, batch.input_lengths)
    model.train(was_training)
    hypotheses = []
    for b, length in enumerate(batch.input_lengths.tolist()):
        utterance = log_probs[b, :length]
        if decoder == "best_path":
            hypotheses.append(ctc_best_path(utterance, blank=FRAME_BLANK))
        else:
            best = ctc_prefix_beam_search(utterance, beam_size=beam_size, blank=FRAME_BLANK)
            hypotheses.append(best[0][0] if best else [])
    references = [e.labels for e in examples]
    return CTCScores(label_error_rate=label_error_rate(hypotheses, references),
                     exact_match=sum(h == r for h, r in zip(hypotheses, references)) / len(references),
                     hypotheses=hypotheses)


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
    beam_size = require_int("beam_size", beam_size, minimum=1)
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


#: the most sentence indices :func:`paired_bootstrap` draws at once (8 MiB of int64); the draws are the
#: same as one call for all resamples would make, since the generator fills the chunks in order.
BOOTSTRAP_CHUNK_ELEMENTS = 1 << 20


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
            a negative seed, ``confidence`` outside ``(0, 1)`` or not finite.

    Example:
        >>> a = [1.0] * 90 + [0.0] * 10        # system A: 90 of 100 sentences right
        >>> b = [1.0] * 80 + [0.0] * 20        # system B: 80, all of them among A's 90
        >>> result = paired_bootstrap(a, b)
        >>> round(result.difference, 2), result.p_value
        (0.1, 0.0)
        >>> paired_bootstrap(b, a).p_value
        1.0
    """
    num_resamples = require_int("num_resamples", num_resamples, minimum=1)
    require_seed("seed", seed)
    confidence = require_number("confidence", confidence, low=0.0, low_inclusive=False)
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
    resampled = torch.empty(num_resamples, dtype=torch.float64)  # A's mean minus B's mean on each test set
    rows = max(1, BOOTSTRAP_CHUNK_ELEMENTS // n)  # test sets drawn at once, so that memory stays bounded
    for start in range(0, num_resamples, rows):
        stop = min(start + rows, num_resamples)
        draws = torch.randint(0, n, (stop - start, n), generator=generator)  # test sets of n sentences each
        resampled[start:stop] = per_sentence[draws].mean(dim=1)
    p_value = float((resampled <= 0).double().mean())  # how often A fails to beat B
    tail = (1 - confidence) / 2
    low, high = torch.quantile(resampled, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    # [book ch11 excerpt end]
    return PairedBootstrap(difference=float(per_sentence.mean()), p_value=p_value, interval=(low, high),
                           num_resamples=num_resamples)
