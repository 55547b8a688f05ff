"""A bigram language model as a table of transition probabilities, whose questions have exact answers.

A bigram model keeps one distribution over the next token per *context*: the
previous token, or the start of the sequence. As a tensor it is a table
:math:`P` of shape ``(C, K)``; row :math:`k` is the distribution of the next
token after context :math:`k`. Context ids and token ids share one numbering:
emitting token :math:`k` makes :math:`k` the next context. The start context
and an optional end-of-sequence class are further ids that the caller chooses.

- :func:`relative_frequencies`: the maximum-likelihood table of a data set.
- :func:`mass_by_length`: the total probability of the sequences of each
  length, exactly, by a forward recursion over lengths.
- :func:`sample_bigram`: ancestral sampling, which stops at the
  end-of-sequence class or after a budget of new tokens.
"""

from __future__ import annotations

import torch

from coursekit.data._checks import require_int


def _require_table(name: str, table: object) -> torch.Tensor:
    if not isinstance(table, torch.Tensor) or not table.is_floating_point():
        kind = table.dtype if isinstance(table, torch.Tensor) else type(table).__name__
        raise TypeError(f"{name} must be a float tensor of transition probabilities, got {kind}")
    if table.dim() != 2:
        raise ValueError(f"{name} must have shape (C, K): one row per context, got shape {tuple(table.shape)}")
    return table


def _require_id(name: str, value: object, size: int, what: str) -> int:
    value = require_int(name, value, minimum=0)
    if value >= size:
        raise ValueError(f"{name} must be {what} in [0, {size}), got {value}")
    return value


def _require_tokens_are_contexts(table: torch.Tensor, eos: int | None) -> None:
    """Every class other than ``eos`` must also be a context (a row), since emitting it makes it one."""
    num_contexts, num_classes = table.shape
    largest_token = num_classes - 1 if eos != num_classes - 1 else num_classes - 2
    if largest_token >= num_contexts:
        raise ValueError(
            f"transitions must have a row for every token it can emit (tokens 0..{largest_token}, "
            f"eos={eos}), got {num_contexts} rows"
        )


def relative_frequencies(
    contexts: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_contexts: int,
    num_classes: int,
    ignore_index: int = -100,
) -> torch.Tensor:
    """The maximum-likelihood bigram table: how often each token followed each context.

    .. math::

        P_{k,j} = \\frac{c(k, j)}{\\sum_{j'} c(k, j')}

    where :math:`c(k, j)` counts the positions whose context is :math:`k` and
    whose target is :math:`j`. Among all tables it maximises the likelihood of
    the targets (each row is the minimiser of a cross-entropy, see chapter 1).
    A context that never occurs has no data; its row is uniform, so that every
    row stays a distribution.

    Args:
        contexts: the context of each position (the previous token, or a start id).
        targets: the token that followed; ``ignore_index`` positions are not counted.
        num_contexts: :math:`C`, the number of rows.
        num_classes: :math:`K`, the number of columns.
        ignore_index: target value of positions to leave out (PyTorch's -100).

    Returns:
        A float64 table of shape ``(C, K)`` whose rows sum to 1.

    Shapes:
        contexts, targets: any shape, the same; result: ``(C, K)``.

    Raises:
        TypeError: ``contexts`` or ``targets`` not an integer tensor; a size not an int.
        ValueError: mismatched shapes, a size below 1, or a counted context or
            target out of range.

    Example:
        >>> contexts = torch.tensor([2, 0, 1, 2, 0])          # 2 is the start
        >>> targets = torch.tensor([0, 1, 0, 1, -100])
        >>> relative_frequencies(contexts, targets, num_contexts=3, num_classes=2)
        tensor([[0.0000, 1.0000],
                [1.0000, 0.0000],
                [0.5000, 0.5000]], dtype=torch.float64)
    """
    num_contexts = require_int("num_contexts", num_contexts, minimum=1)
    num_classes = require_int("num_classes", num_classes, minimum=1)
    for name, tensor in (("contexts", contexts), ("targets", targets)):
        if not isinstance(tensor, torch.Tensor) or tensor.is_floating_point() or tensor.dtype == torch.bool:
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise TypeError(f"{name} must be an integer tensor of ids, got {kind}")
    if contexts.shape != targets.shape:
        raise ValueError(
            f"targets must have the shape of contexts {tuple(contexts.shape)}, got {tuple(targets.shape)}"
        )
    counted = targets != ignore_index
    for name, ids, size in (("contexts", contexts[counted], num_contexts), ("targets", targets[counted], num_classes)):
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
            bad = int(ids[(ids < 0) | (ids >= size)][0])
            raise ValueError(f"{name} must hold ids in [0, {size}) where counted, got {bad}")
    counts = torch.zeros(num_contexts, num_classes, dtype=torch.float64, device=contexts.device)
    ones = torch.ones(int(counted.sum()), dtype=torch.float64, device=contexts.device)
    counts.index_put_((contexts[counted], targets[counted]), ones, accumulate=True)
    totals = counts.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(counts, 1.0 / num_classes)
    return torch.where(totals > 0, counts / totals.clamp_min(1.0), uniform)


def mass_by_length(
    transitions: torch.Tensor, *, start: int, max_length: int, eos: int | None = None
) -> torch.Tensor:
    """Total probability of the sequences of each length :math:`T = 0, \\dots, T_{\\max}`.

    With an end-of-sequence class the mass of length :math:`T` is the
    probability of emitting :math:`T` tokens and then ``eos``,

    .. math::

        \\sum_{y \\in \\mathcal{V}^T} \\Bigl(\\prod_{t=1}^{T} P_{y_{t-1}, y_t}\\Bigr)\\, P_{y_T, \\text{eos}},
        \\qquad y_0 = \\text{start},

    and the entries add up to 1 as :math:`T_{\\max}` grows whenever the model
    stops with probability 1. Without one (``eos=None``) it is the probability
    of the :math:`T` tokens alone, which is 1 for every :math:`T` when the rows
    sum to 1: the sequences of each length form a distribution of their own,
    and the masses of all lengths add up to :math:`T_{\\max} + 1`. The sum over
    :math:`\\mathcal{V}^T` is computed by carrying the mass of the unfinished
    prefixes from one length to the next, in :math:`O(T_{\\max} C K)`.

    Args:
        transitions: the table :math:`P`, row :math:`k` the next-token
            distribution after context :math:`k`.
        start: the row of the start context.
        max_length: :math:`T_{\\max}`, the longest length reported.
        eos: the column of the end-of-sequence class, or ``None``.

    Returns:
        Shape ``(max_length + 1,)``: entry :math:`T` is the mass of length :math:`T`
        (entry 0 is ``P[start, eos]``, or 1 without ``eos``: the empty product).
        Differentiable with respect to ``transitions``.

    Shapes:
        transitions: ``(C, K)``; result: ``(max_length + 1,)``.

    Raises:
        TypeError: ``transitions`` not a float tensor, an id or length not an int.
        ValueError: ``transitions`` not 2-D, lacking a row for a token it can
            emit, or ``start``/``eos``/``max_length`` out of range.

    Example:
        >>> P = torch.tensor([[0.5, 0.5], [0.75, 0.25]])   # token 0, then eos = 1; start = 1
        >>> mass_by_length(P, start=1, max_length=3, eos=1)
        tensor([0.2500, 0.3750, 0.1875, 0.0938])
        >>> mass_by_length(P[:, :1] / P[:, :1], start=1, max_length=3)
        tensor([1., 1., 1., 1.])
    """
    transitions = _require_table("transitions", transitions)
    num_contexts, num_classes = transitions.shape
    start = _require_id("start", start, num_contexts, "a context id (a row)")
    max_length = require_int("max_length", max_length, minimum=0)
    if eos is not None:
        eos = _require_id("eos", eos, num_classes, "a class id (a column)")
    _require_tokens_are_contexts(transitions, eos)

    keep = transitions.new_ones(num_classes)
    if eos is not None:
        keep[eos] = 0.0
    alive = transitions.new_zeros(num_contexts)
    alive[start] = 1.0
    masses = []
    for length in range(max_length + 1):
        if length > 0:
            emitted = (alive @ transitions) * keep          # the prefixes one token longer
            alive = torch.cat([emitted, emitted.new_zeros(num_contexts - num_classes)]) \
                if num_contexts >= num_classes else emitted[:num_contexts]
        masses.append(alive @ transitions[:, eos] if eos is not None else alive.sum())
    return torch.stack(masses)


def sample_bigram(
    transitions: torch.Tensor,
    first_contexts: torch.Tensor,
    *,
    max_new_tokens: int,
    generator: torch.Generator,
    eos: int | None = None,
) -> list[list[int]]:
    """Draw one continuation per context, token by token, until ``eos`` or ``max_new_tokens``.

    Each step draws :math:`y_t \\sim P_{y_{t-1}, \\cdot}`; a continuation that
    draws ``eos`` stops there (``eos`` is its last element). A model that never
    draws ``eos`` runs to the budget: the caller cannot tell "stopped" from
    "cut off" except by that last element.

    Args:
        transitions: the table :math:`P` (rows are distributions; they need not
            be normalised exactly, as for ``torch.multinomial``).
        first_contexts: the context each continuation starts from (a start id,
            or the last token of a prompt).
        max_new_tokens: the budget of tokens per continuation (>= 1).
        generator: the source of randomness.
        eos: the class that ends a continuation, or ``None``.

    Returns:
        One list of token ids per entry of ``first_contexts``.

    Shapes:
        transitions: ``(C, K)``; first_contexts: ``(B,)``.

    Raises:
        TypeError: wrong types.
        ValueError: ``transitions`` not 2-D or lacking a row for a token it can
            emit, a context or ``eos`` out of range, ``max_new_tokens`` < 1.

    Example:
        >>> P = torch.tensor([[0.0, 1.0], [1.0, 0.0]])     # 1 (start) -> 0 -> eos = 1
        >>> sample_bigram(P, torch.tensor([1, 1]), max_new_tokens=5, generator=torch.Generator().manual_seed(0), eos=1)
        [[0, 1], [0, 1]]
    """
    transitions = _require_table("transitions", transitions)
    num_contexts, num_classes = transitions.shape
    if not isinstance(first_contexts, torch.Tensor) or first_contexts.is_floating_point() or first_contexts.dim() != 1:
        raise TypeError(f"first_contexts must be a 1-D integer tensor of context ids, got {first_contexts!r}")
    if first_contexts.numel() and (int(first_contexts.min()) < 0 or int(first_contexts.max()) >= num_contexts):
        raise ValueError(f"first_contexts must hold context ids in [0, {num_contexts}), got {first_contexts.tolist()}")
    max_new_tokens = require_int("max_new_tokens", max_new_tokens, minimum=1)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if eos is not None:
        eos = _require_id("eos", eos, num_classes, "a class id (a column)")
    _require_tokens_are_contexts(transitions, eos)

    contexts = first_contexts.long()
    finished = torch.zeros_like(contexts, dtype=torch.bool)
    drawn = []
    for _ in range(max_new_tokens):
        tokens = torch.multinomial(transitions[contexts], 1, generator=generator).squeeze(-1)
        drawn.append(tokens)
        if eos is not None:
            finished = finished | (tokens == eos)
            if bool(finished.all()):
                break
            tokens = torch.where(tokens == eos, torch.zeros_like(tokens), tokens)   # any row: it is cut below
        contexts = tokens
    columns = torch.stack(drawn, dim=1).tolist()
    if eos is None:
        return columns
    return [row[: row.index(eos) + 1] if eos in row else row for row in columns]
