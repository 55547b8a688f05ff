"""Tiny language models that train on a laptop CPU in seconds.

- :mod:`~coursekit.models.ngram`: count-based n-gram LM with add-k smoothing.
- :mod:`~coursekit.models.bigram`: a bigram table's exact answers: relative frequencies, mass by length, sampling.
- :mod:`~coursekit.models.rnn`: Elman/GRU/LSTM LMs with per-step logits and truncated BPTT.
- :mod:`~coursekit.models.transformer`: a decoder-only Transformer LM.
- :mod:`~coursekit.models.seq2seq`: GRU encoder-decoder with attention; greedy, beam and sampling decoders.
- :mod:`~coursekit.models.ctc`: a bidirectional GRU recogniser for CTC; best-path and prefix beam search decoding.
- :mod:`~coursekit.models.distillation`: teacher/student sizes, sequence-level KD data.
- :mod:`~coursekit.models.checkpoints`: save/load (``weights_only=True``) and the shipped checkpoints.
"""

from coursekit.models.bigram import mass_by_length, relative_frequencies, sample_bigram
from coursekit.models.checkpoints import load_checkpoint, save_checkpoint, shipped_checkpoint
from coursekit.models.ctc import CTCRecognizer, ctc_best_path, ctc_collapse, ctc_prefix_beam_search
from coursekit.models.distillation import (
    model_size,
    sequence_interpolation_targets,
    sequence_kd_pairs,
    sequence_kd_targets,
    teacher_student_divergence,
)
from coursekit.models.ngram import NGramLM
from coursekit.models.rnn import RNNLM, detach_hidden
from coursekit.models.seq2seq import DecodeResult, Seq2Seq
from coursekit.models.transformer import TransformerLM, causal_mask, sinusoidal_positions

__all__ = [
    "NGramLM", "RNNLM", "TransformerLM", "Seq2Seq", "DecodeResult", "detach_hidden", "causal_mask",
    "CTCRecognizer", "ctc_best_path", "ctc_collapse", "ctc_prefix_beam_search",
    "sinusoidal_positions", "model_size", "sequence_kd_targets", "sequence_kd_pairs", "teacher_student_divergence",
    "sequence_interpolation_targets",
    "save_checkpoint", "load_checkpoint", "shipped_checkpoint",
    "relative_frequencies", "mass_by_length", "sample_bigram",
]
