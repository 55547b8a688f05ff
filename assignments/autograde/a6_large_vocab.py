"""Out-of-process grading spec of a6_large_vocab (read by `coursekit grade` and by the notebook's hidden blocks).

Not copied into the release (it lies outside ``source/``), but public in this repository,
like the source notebooks' solutions.

The one definition of each question (the notebook's hidden blocks evaluate it;
see ``coursekit.course.hidden_score``), with inputs drawn, for each student,
from a seed derived from SEED, the course and the student, keyed by the
course's grading secret (SEED is public, like this file; the secret is not: see
coursekit.grading.secret). The memory question does not trust any measurement
taken inside the student's process (a dispatch mode, a counter, a printed
number can all be patched there). Instead the spec sets a memory budget that
the runner applies as a hard address-space limit before any student code runs,
and asks for the loss and its gradients at N = 4096 tokens and V = 32768
classes: the logits alone take 512 MiB in float32 and the plain expression
needs at least twice that, while an answer that keeps one chunk of logits at a
time stays well within the budget (measured with one thread at chunk sizes 256 to
512: 34 to 66 MiB for coursekit's reference, about 100 to 200 MiB for the
notebook's solution, which keeps two or three chunk-sized tensors alive). The values and gradients that come back are
compared with the reference computed here, so a fast wrong answer earns nothing
either.
"""

from __future__ import annotations

import numpy as np

from coursekit.grading.spec import AssignmentSpec, Case, FunctionQuestion
from coursekit.losses import chunked_cross_entropy

SEED = 640_251_977
#: address space (MiB) the notebook may add to Python with NumPy and torch loaded.
MEMORY_BUDGET_MB = 512

BYTES_ADAPTER = '''
def _coursekit_logits_bytes(num_tokens, vocab_size, dtype_name=None):
    import torch as _torch
    if dtype_name is None:
        return logits_memory_bytes(num_tokens, vocab_size)
    return logits_memory_bytes(num_tokens, vocab_size, getattr(_torch, dtype_name))
'''

CHUNKED_ADAPTER = '''
def _coursekit_chunked(hidden, weight, bias, targets, *, with_bias, **options):
    return chunked_cross_entropy(hidden, weight, targets, bias=bias if with_bias else None, **options)
'''

_ELEMENT_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}


def _reference_bytes(num_tokens: int, vocab_size: int, dtype_name: str | None = None) -> int:
    """Bytes of the logits; without a dtype, float32's (the notebook's default)."""
    return int(num_tokens) * int(vocab_size) * _ELEMENT_BYTES[dtype_name or "float32"]


def _reference_chunked(hidden, weight, bias, targets, *, with_bias, **options):
    return chunked_cross_entropy(hidden, weight, targets, bias=bias if with_bias else None, **options)


def bytes_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((1, 1, "float64")), Case((32768, 128000, "float32")), Case((131072, 262144, "bfloat16")),
             Case((2, 3), label="the default dtype")]
    for dtype in ("float32", "float16", "bfloat16", "float64"):
        cases.append(Case((int(rng.integers(1, 5000)), int(rng.integers(1, 70000)), dtype)))
    return cases


def _problem(rng: np.random.Generator, tokens: int, classes: int, width: int, dtype: type, ignored: float) -> tuple:
    hidden = rng.standard_normal((tokens, width)).astype(dtype)
    weight = (rng.standard_normal((classes, width)) / np.sqrt(width)).astype(dtype)
    bias = rng.standard_normal(classes).astype(dtype)
    targets = rng.integers(0, classes, size=tokens).astype(np.int64)
    if tokens > 2:
        targets[rng.random(tokens) < ignored] = -100
        targets[0] = 0
    return hidden, weight, bias, targets


def chunked_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for tokens, classes, width, chunk in [(1, 2, 3, 1), (9, 2, 4, 4), (17, 11, 5, 5), (16, 13, 6, 16), (12, 7, 3, 100)]:
        for dtype in (np.float32, np.float64):
            problem = _problem(rng, tokens, classes, width, dtype, 0.25)
            for reduction in ("mean", "sum", "none"):
                cases.append(Case(problem, {"with_bias": True, "chunk_size": chunk, "reduction": reduction}))
            hidden, weight, bias, targets = problem
            relabelled = np.where(targets < 0, 1, targets)
            relabelled[0] = 0
            cases.append(Case((hidden, weight, bias, relabelled),
                              {"with_bias": False, "chunk_size": chunk, "ignore_index": 1}, label="bias=None"))
    return cases


def memory_cases(rng: np.random.Generator) -> list[Case]:
    problem = _problem(rng, 4096, 32768, 16, np.float32, 0.1)
    return [
        Case(problem, {"with_bias": True, "chunk_size": 256, "reduction": "mean"}),
        Case(problem, {"with_bias": False, "chunk_size": 512, "reduction": "sum"}, label="bias=None"),
        Case(problem, {"with_bias": True, "chunk_size": 384, "reduction": "none"}),
    ]


SPEC = AssignmentSpec(
    assignment="a6_large_vocab",
    notebook="a6_large_vocab",
    seed=SEED,
    memory_budget_mb=MEMORY_BUDGET_MB,
    questions=(
        FunctionQuestion("test_logits_memory_bytes", "_coursekit_logits_bytes", 1, bytes_cases, _reference_bytes,
                         adapter=BYTES_ADAPTER, student_function="logits_memory_bytes", options=("dtype_name",)),
        FunctionQuestion("test_chunked_cross_entropy", "_coursekit_chunked", 5, chunked_cases, _reference_chunked,
                         rtol=1e-4, atol=1e-6, grad_wrt=(0, 1, 2), adapter=CHUNKED_ADAPTER,
                         student_function="chunked_cross_entropy", withholds=(chunked_cross_entropy,),
                         adapter_options=("with_bias",)),
        # atol 1e-4, not 1e-6: with reduction='sum' over 4096 float32 tokens a weight gradient's entry is a sum of
        # terms of size 1 that may cancel to about 1e-5, and the solution's chunked order then differs from the
        # reference's by up to 8.6e-6 there (measured; it failed one honest student in five at 1e-6).
        FunctionQuestion("test_chunked_memory", "_coursekit_chunked", 4, memory_cases, _reference_chunked,
                         rtol=1e-4, atol=1e-4, grad_wrt=(0, 1, 2), adapter=CHUNKED_ADAPTER,
                         student_function="chunked_cross_entropy", withholds=(chunked_cross_entropy,),
                         adapter_options=("with_bias",)),
    ),
)
