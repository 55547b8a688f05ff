"""Generated data for the course: nothing is downloaded, every generator takes a seed.

- :mod:`~coursekit.data.vocab`: word- and character-level vocabularies with ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``.
- :mod:`~coursekit.data.toy_language`: a toy language with an exactly known entropy floor.
- :mod:`~coursekit.data.frames`: noisy feature frames and the labels they spell, for CTC.
- :mod:`~coursekit.data.translation`: number words -> digits, with an out-of-distribution split.
- :mod:`~coursekit.data.batching`: padding, masks, bucketing, token-budget batches and truncated-BPTT streams.
"""

from coursekit.data.batching import (
    LMBatch,
    PaddedBatch,
    Seq2SeqBatch,
    bucket_batches,
    lm_batch,
    pad_batch,
    seq2seq_batch,
    stream_values,
    TBPTTWindow,
    tbptt_chunks,
    token_budget_batches,
    tbptt_windows,
    token_stream,
)
from coursekit.data.toy_language import Agreement, ToyCorpus, ToyLanguage, default_language, subject_and_verb, toy_corpus
from coursekit.data.translation import (
    PreferencePair,
    TranslationTask,
    number_to_digits,
    number_to_words,
    one_digit_edit,
    preference_pairs,
    translation_task,
)
from coursekit.data.vocab import BOS, BOS_ID, EOS, EOS_ID, PAD, PAD_ID, UNK, UNK_ID, Vocab
from coursekit.data.frames import FRAME_BLANK, FrameBatch, FrameExample, FrameTask, frame_batch, frame_task

__all__ = [
    "Vocab", "PAD", "BOS", "EOS", "UNK", "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID",
    "ToyLanguage", "ToyCorpus", "default_language", "toy_corpus", "Agreement", "subject_and_verb",
    "TranslationTask", "translation_task", "number_to_words", "number_to_digits",
    "PreferencePair", "preference_pairs", "one_digit_edit",
    "FRAME_BLANK", "FrameExample", "FrameTask", "FrameBatch", "frame_task", "frame_batch",
    "PaddedBatch", "LMBatch", "Seq2SeqBatch", "pad_batch", "lm_batch", "seq2seq_batch",
    "bucket_batches", "token_budget_batches", "token_stream", "stream_values", "tbptt_chunks", "TBPTTWindow",
    "tbptt_windows",
]
