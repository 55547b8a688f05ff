"""Submissions used by tests/test_assignments.py: right-but-different answers and wrong ones.

Each entry replaces the source of one answer cell (found by its nbgrader
``grade_id``) of a student version. ``ALTERNATIVES`` are correct answers written
differently from the instructor's solution (Python loops instead of vectorised
code, other library calls); ``WRONG`` holds, per assignment, one plausible
mistake and the test cell that must lose its points because of it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SOLUTION_REGION = re.compile(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n|^[ \t]*### END SOLUTION[ \t]*\n?", re.MULTILINE)

ALTERNATIVES: dict[str, dict[str, str]] = {
    "a1_sequence_loss": {
        "answer_token_nll": '''
def token_nll(logits, targets, *, ignore_index=-100):
    rows = logits.reshape(-1, logits.shape[-1])
    losses = []
    for row, target in zip(rows, targets.reshape(-1).tolist()):
        if target == ignore_index:
            losses.append(row[:0].sum())
            continue
        top = row.max().detach()
        total = sum(torch.exp(value - top) for value in row)
        losses.append(torch.log(total) + top - row[target])
    return torch.stack(losses).reshape(targets.shape)
''',
        "answer_sequence_loss": '''
def sequence_loss(token_losses, mask=None, *, reduction="sum"):
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}")
    width = token_losses.shape[-1]
    rows = token_losses.reshape(-1, width)
    keep = torch.ones(rows.shape, dtype=torch.bool) if mask is None else mask.reshape(-1, width)
    results = []
    for values, kept in zip(rows, keep):
        total, count = values[:0].sum(), 0
        for value, counted in zip(values, kept.tolist()):
            if counted:
                total = total + value
                count += 1
        if reduction == "mean":
            total = total / count if count else total * float("nan")
        results.append(total)
    return torch.stack(results).reshape(token_losses.shape[:-1])
''',
        "answer_perplexity": '''
def perplexity(mean_nll):
    if isinstance(mean_nll, torch.Tensor):
        return torch.full_like(mean_nll, math.e) ** mean_nll
    return torch.tensor(math.e ** float(mean_nll))
''',
        "answer_fox": '''
fox_losses = torch.tensor([0.1, 0.3, 0.2, 0.4])
halves_probs = torch.tensor([1 / 2, 1 / 4, 1 / 8])
fox_total = sum(float(x) for x in fox_losses)
fox_mean = fox_total / len(fox_losses)
fox_perplexity = math.exp(fox_mean)
halves_total = sum(-math.log(float(p)) for p in halves_probs)
halves_bits = sum(-math.log2(float(p)) for p in halves_probs) / 3
halves_perplexity = 2 ** halves_bits
''',
        "answer_mc_classification": 'mc_classification = "ABCD"[1]\n',
    },
    "a2_masking_reductions": {
        "answer_sequence_mask": '''
def sequence_mask(lengths, max_len=None):
    values = lengths.tolist()
    if max_len is None:
        max_len = max(values, default=0)
    rows = []
    for n in values:
        if n < 0 or n > max_len:
            raise ValueError(f"lengths holds {n}, outside [0, {max_len}]")
        rows.append([t < n for t in range(max_len)])
    return torch.tensor(rows, dtype=torch.bool).reshape(len(values), max_len)
''',
        "answer_response_mask": '''
def response_mask(prompt_lengths, lengths, max_len=None):
    starts, ends = prompt_lengths.tolist(), lengths.tolist()
    if max_len is None:
        max_len = max(ends, default=0)
    rows = []
    for start, end in zip(starts, ends):
        if start > end:
            raise ValueError(f"prompt_lengths: a prompt of {start} tokens in a row of {end}")
        if end > max_len:
            raise ValueError(f"lengths: {end} > max_len={max_len}")
        rows.append([start <= t < end for t in range(max_len)])
    return torch.tensor(rows, dtype=torch.bool).reshape(len(ends), max_len)
''',
        "answer_labels_from_mask": '''
def labels_from_mask(input_ids, loss_mask, *, ignore_index=-100):
    labels = input_ids.clone()
    labels[~loss_mask] = ignore_index
    return labels
''',
        "answer_batch_loss": '''
def batch_loss(token_losses, mask=None, *, reduction="token_mean"):
    if reduction not in ("sum", "token_mean", "sequence_mean"):
        raise ValueError(f"unknown reduction {reduction!r}")
    width = token_losses.shape[-1]
    rows = token_losses.reshape(-1, width)
    keep = torch.ones(rows.shape, dtype=torch.bool) if mask is None else mask.reshape(-1, width)
    grand_total, grand_count, means = rows[:0].sum(), 0, []
    for values, kept in zip(rows, keep):
        picked = values[kept]
        grand_total = grand_total + picked.sum()
        grand_count += len(picked)
        if len(picked):
            means.append(picked.sum() / len(picked))
    if reduction == "sum":
        return grand_total
    if grand_count == 0:
        warnings.warn("nothing to average", RuntimeWarning)
        return grand_total * 0.0
    if reduction == "token_mean":
        return grand_total / grand_count
    return sum(means) / len(means)
''',
        "answer_causal_lm_loss": '''
def causal_lm_loss(logits, input_ids, *, loss_mask=None, ignore_index=-100, reduction="token_mean"):
    if reduction not in ("token_mean", "sequence_mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}")
    length = input_ids.shape[-1]
    flat_logits = logits.reshape(-1, length, logits.shape[-1])
    flat_ids = input_ids.reshape(-1, length)
    flat_mask = None if loss_mask is None else loss_mask.reshape(-1, length)
    rows, masks = [], []
    for b in range(flat_ids.shape[0]):
        row, row_mask = [], []
        for t in range(1, length):
            target = int(flat_ids[b, t])
            scored = target != ignore_index and (flat_mask is None or bool(flat_mask[b, t]))
            if scored and not 0 <= target < logits.shape[-1]:
                raise ValueError(f"input_ids: token {target} is scored but outside [0, {logits.shape[-1]})")
            if scored:
                row.append(-torch.log_softmax(flat_logits[b, t - 1], dim=-1)[target])
            else:
                row.append(flat_logits[b, t - 1, :0].sum())
            row_mask.append(scored)
        rows.append(torch.stack(row) if row else flat_logits[b, :0, 0])
        masks.append(row_mask)
    losses = torch.stack(rows).reshape(*input_ids.shape[:-1], length - 1)
    scored = torch.tensor(masks, dtype=torch.bool).reshape(losses.shape)
    if reduction == "none":
        return losses.sum(dim=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return batch_loss(losses, scored, reduction=reduction)
''',
        "answer_accumulate_gradients": '''
def accumulate_gradients(model, micro_batches):
    counts = [int(mask.sum()) for _, _, mask in micro_batches]
    everything = sum(counts)
    reported = 0.0
    for (features, targets, mask), count in zip(micro_batches, counts):
        losses = token_losses_of(model, features, targets)
        part = losses[mask].sum() * (1.0 / max(everything, 1))
        part.backward()
        reported = reported + float(part)
    return float(reported)
''',
    },
    "a3_rnn_loss": {
        "answer_stream_nll": '''
def stream_nll(model, stream, hidden=None):
    total = 0.0
    for t in range(stream.shape[1] - 1):
        logits, hidden = model(stream[:, t:t + 1], hidden)
        log_probs = torch.log_softmax(logits[:, 0, :], dim=-1)
        total = total - log_probs.gather(1, stream[:, t + 1:t + 2]).sum()
    return total, hidden
''',
        "answer_chunked_stream_nll": '''
def detach_state(hidden):
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


def chunked_stream_nll(model, stream, chunk_len, *, detach=True):
    steps = stream.shape[1] - 1
    start, hidden, out = 0, None, []
    while start < steps:
        stop = min(start + chunk_len, steps)
        if hidden is not None and detach:
            hidden = detach_state(hidden)
        logits, hidden = model(stream[:, start:stop], hidden)
        picked = torch.log_softmax(logits, dim=-1).gather(2, stream[:, start + 1:stop + 1].unsqueeze(2))
        out.append(-picked.sum())
        start = stop
    return out
''',
        "answer_train_tbptt": '''
def train_tbptt(model, stream, *, chunk_len=20, steps=150, lr=0.01):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    last = stream.shape[1] - 1
    position, hidden, losses = 0, None, []
    while len(losses) < steps:
        if position >= last:
            position, hidden = 0, None
        stop = min(position + chunk_len, last)
        logits, hidden = model(stream[:, position:stop], None if hidden is None else detach_state(hidden))
        targets = stream[:, position + 1:stop + 1]
        loss = -torch.log_softmax(logits, dim=-1).gather(2, targets.unsqueeze(2)).mean()
        model.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        position = stop
    return losses
''',
    },
    "a4_distillation": {
        "answer_label_smoothed_nll": '''
def label_smoothed_nll(logits, targets, epsilon, *, ignore_index=-100, reduction="mean", variant="pytorch"):
    num_classes = logits.shape[-1]
    if variant == "pytorch":
        on, off = 1 - epsilon + epsilon / num_classes, epsilon / num_classes
    elif variant == "fairseq":
        on, off = 1 - epsilon, epsilon / (num_classes - 1)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    keep = targets != ignore_index
    soft = torch.full(logits.shape, off, dtype=logits.dtype)
    soft.scatter_(-1, targets.masked_fill(~keep, 0).unsqueeze(-1), on)
    losses = -(soft * torch.log_softmax(logits, dim=-1)).sum(dim=-1) * keep
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / keep.sum()
''',
        "answer_kd_loss": '''
def _reduce_positions(per_position, mask, reduction):
    if mask is None:
        mask = torch.ones_like(per_position, dtype=torch.bool)
    kept = torch.where(mask, per_position, torch.zeros_like(per_position))
    if reduction == "none":
        return kept
    if reduction == "sum":
        return kept.sum()
    if not bool(mask.any()):
        return kept.sum() * 0.0
    if reduction == "token_mean":
        return kept.sum() / mask.sum()
    width = kept.shape[-1]
    means = [row[m].mean() for row, m in zip(kept.reshape(-1, width), mask.reshape(-1, width)) if bool(m.any())]
    return torch.stack(means).mean()


def kd_loss(student_logits, teacher_logits, *, temperature=1.0, mask=None, reduction="token_mean"):
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=-1)
    per_position = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(dim=-1)
    return _reduce_positions(per_position * temperature * temperature, mask, reduction)
''',
        "answer_kd_cross_entropy": '''
def kd_cross_entropy(student_logits, teacher_logits, *, temperature=1.0, mask=None, reduction="token_mean"):
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    soft_targets = torch.softmax(teacher_logits / temperature, dim=-1)
    scores = student_logits / temperature
    log_q = scores - torch.logsumexp(scores, dim=-1, keepdim=True)
    per_position = torch.einsum("...k,...k->...", soft_targets, -log_q)
    return _reduce_positions(per_position, mask, reduction)
''',
        "answer_sequence_kd_targets": '''
def sequence_kd_targets(teacher, sources, *, beam_size=4, max_len=20, batch_size=256):
    teacher.eval()
    outputs = []
    with torch.no_grad():
        for source in sources:
            single = pad_batch([source])
            best = teacher.beam_search(single.tokens, single.lengths, beam_size=beam_size, max_len=max_len).best()[0]
            while best and best[-1] == EOS_ID:
                best = best[:-1]
            outputs.append(list(best))
    return outputs
''',
        "answer_train_student": '''
def train_student(pairs, *, steps=150, batch_size=32, lr=0.02, seed=0):
    torch.manual_seed(seed)
    model = Seq2Seq(len(src_vocab), len(tgt_vocab), embed_dim=16, hidden_size=32)
    rng = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        chosen = [pairs[int(i)] for i in torch.randint(len(pairs), (batch_size,), generator=rng)]
        batch = seq2seq_batch(chosen)
        log_probs = torch.log_softmax(model(batch.src, batch.src_lengths, batch.tgt_in), dim=-1)
        picked = log_probs.gather(2, batch.tgt_out.unsqueeze(2)).squeeze(2)
        loss = -(picked * batch.tgt_mask).sum() / batch.tgt_mask.sum()
        model.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model
''',
    },
    "a5_sequence_objectives": {
        "answer_ctc_loss": '''
def ctc_loss(log_probs, targets, input_lengths, target_lengths, *, blank=0, reduction="mean", zero_infinity=False):
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}")
    minus_inf = torch.tensor(float("-inf"), dtype=log_probs.dtype)
    per_sequence = []
    for n in range(log_probs.shape[1]):
        labels = [int(v) for v in targets[n, : int(target_lengths[n])]]
        states = [blank]
        for label in labels:
            states += [label, blank]
        frames = int(input_lengths[n])
        alpha = [log_probs[0, n, states[0]]] + [log_probs[0, n, states[1]] if len(states) > 1 else minus_inf]
        alpha += [minus_inf] * (len(states) - 2)
        alpha = alpha[: len(states)]
        for t in range(1, frames):
            new = []
            for s, state in enumerate(states):
                options = [alpha[s]]
                if s >= 1:
                    options.append(alpha[s - 1])
                if s >= 2 and state != blank and state != states[s - 2]:
                    options.append(alpha[s - 2])
                new.append(safe_logsumexp(torch.stack(options)) + log_probs[t, n, state])
            alpha = new
        ends = alpha[-2:] if len(states) > 1 else alpha[-1:]
        per_sequence.append(-safe_logsumexp(torch.stack(ends)))
    losses = torch.stack(per_sequence)
    if zero_infinity:
        losses = torch.where(losses == float("inf"), torch.zeros_like(losses), losses)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return torch.stack([loss / max(int(length), 1) for loss, length in zip(losses, target_lengths)]).mean()
''',
        "answer_mrt_risk": '''
def mrt_risk(sequence_log_probs, costs, *, alpha=1.0, mask=None):
    scores = alpha * sequence_log_probs
    keep = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
    if not bool(keep.any(dim=-1).all()):
        raise ValueError("mask: every row needs at least one True candidate")
    scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    expected = (weights * costs.detach().masked_fill(~keep, 0.0)).sum(dim=-1)
    return expected.reshape(-1).sum() / expected.numel()
''',
        "answer_reinforce_loss": '''
def reinforce_loss(sequence_log_probs, rewards, *, baseline=None):
    if baseline is None:
        b = torch.zeros_like(rewards)
    elif isinstance(baseline, str) and baseline == "mean":
        b = torch.full_like(rewards, float(rewards.mean()))
    elif isinstance(baseline, str):
        raise ValueError(f"unknown baseline {baseline!r}")
    else:
        b = torch.as_tensor(baseline, dtype=rewards.dtype).expand_as(rewards)
    terms = [(float(r) - float(c)) * lp for r, c, lp in zip(rewards.reshape(-1), b.reshape(-1), sequence_log_probs.reshape(-1))]
    return -torch.stack(terms).sum() / len(terms)
''',
        "answer_dpo_loss": '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, *, beta=0.1, reduction="mean"):
    chosen_reward = beta * (policy_chosen_logps - reference_chosen_logps)
    rejected_reward = beta * (policy_rejected_logps - reference_rejected_logps)
    losses = F.softplus(rejected_reward - chosen_reward)
    return {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]
''',
        "answer_policy_loss_aggregate": '''
def policy_loss_aggregate(token_losses, mask, *, mode="grpo", max_len=None):
    if mode not in ("grpo", "dapo", "dr_grpo"):
        raise ValueError(f"unknown mode {mode!r}")
    width = token_losses.shape[-1]
    rows = token_losses.reshape(-1, width)
    keep = torch.ones(rows.shape, dtype=torch.bool) if mask is None else mask.reshape(-1, width)
    picked = [row[m] for row, m in zip(rows, keep)]
    total = sum((p.sum() for p in picked), rows[:0].sum())
    count = sum(len(p) for p in picked)
    if mode == "dr_grpo":
        budget = width if max_len is None else max_len
        if any(len(p) > budget for p in picked):
            raise ValueError(f"max_len={budget} is shorter than a response")
        return total / (len(picked) * budget)
    if count == 0:
        warnings.warn("no tokens", RuntimeWarning)
        return total * 0.0
    if mode == "dapo":
        return total / count
    means = [p.mean() for p in picked if len(p)]
    return sum(means) / len(means)
''',
    },
    "a6_large_vocab": {
        "answer_logits_memory_bytes": '''
def logits_memory_bytes(num_tokens, vocab_size, dtype=torch.float32):
    bits = torch.finfo(dtype).bits if dtype.is_floating_point else torch.iinfo(dtype).bits
    return num_tokens * vocab_size * bits // 8
''',
        "answer_chunked_cross_entropy": '''
class ChunkedTokenNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, ignore_index):
        keep = targets != ignore_index
        labels = targets.masked_fill(~keep, 0)
        pieces = []
        for h, y, k in zip(hidden.split(chunk_size), labels.split(chunk_size), keep.split(chunk_size)):
            scores = F.linear(h, weight, bias)
            nll = -torch.log_softmax(scores, dim=-1)[torch.arange(len(y)), y]
            pieces.append(nll * k)
        ctx.save_for_backward(hidden, weight, bias, labels, keep)
        ctx.chunk_size = chunk_size
        return torch.cat(pieces)

    @staticmethod
    def backward(ctx, upstream):
        hidden, weight, bias, labels, keep = ctx.saved_tensors
        d_hidden = []
        d_weight = torch.zeros_like(weight)
        d_bias = None if bias is None else torch.zeros_like(bias)
        size = ctx.chunk_size
        for start in range(0, len(labels), size):
            h = hidden[start:start + size]
            y = labels[start:start + size]
            g = torch.where(keep[start:start + size], upstream[start:start + size], torch.zeros_like(upstream[start:start + size]))
            d_scores = torch.softmax(F.linear(h, weight, bias), dim=-1)
            d_scores[torch.arange(len(y)), y] -= 1
            d_scores = d_scores * g[:, None]
            d_hidden.append(d_scores @ weight)
            d_weight.addmm_(d_scores.T, h)
            if d_bias is not None:
                d_bias += d_scores.sum(0)
        return torch.cat(d_hidden), d_weight, d_bias, None, None, None


def chunked_cross_entropy(hidden, weight, targets, *, bias=None, chunk_size=1024, ignore_index=-100, reduction="mean"):
    per_token = ChunkedTokenNLL.apply(hidden, weight, bias, targets, chunk_size, ignore_index)
    if reduction == "none":
        return per_token
    total = per_token.sum()
    if reduction == "sum":
        return total
    return total / (targets != ignore_index).sum().to(total.dtype)
''',
    },
}

# assignment -> (answer cell to replace, wrong source, test cell that must lose its points)
WRONG: dict[str, tuple[str, str, str]] = {
    "a1_sequence_loss": ("answer_token_nll", '''
def token_nll(logits, targets, *, ignore_index=-100):
    # forgets that ignored targets cost nothing
    safe = targets.clamp(min=0)
    return torch.logsumexp(logits, dim=-1) - logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
''', "test_token_nll"),
    "a2_masking_reductions": ("answer_sequence_mask", '''
def sequence_mask(lengths, max_len=None):
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len)[None, :] <= lengths[:, None]      # off by one
''', "test_sequence_mask"),
    "a3_rnn_loss": ("answer_train_tbptt", '''
def train_tbptt(model, stream, *, chunk_len=20, steps=150, lr=0.01):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    chunks = tbptt_chunks(stream, chunk_len)
    history = []
    for step in range(steps):
        inputs, targets = chunks[step % len(chunks)]
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()          # never calls optimizer.step()
        history.append(loss.item())
    return history
''', "test_train_tbptt"),
    "a4_distillation": ("answer_kd_cross_entropy", '''
def kd_cross_entropy(student_logits, teacher_logits, *, temperature=1.0, mask=None, reduction="token_mean"):
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    p = F.softmax(teacher_logits / temperature, dim=-1)
    return _reduce_positions(-(p * log_q).sum(dim=-1) * temperature**2, mask, reduction)   # spurious T^2
''', "test_kd_cross_entropy"),
    "a5_sequence_objectives": ("answer_mrt_risk", '''
def mrt_risk(sequence_log_probs, costs, *, alpha=1.0, mask=None):
    scores = sequence_log_probs                       # forgets alpha
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
        costs = costs.masked_fill(~mask, 0.0)
    return (scores.softmax(dim=-1) * costs.detach()).sum(dim=-1).mean()
''', "test_mrt_risk"),
    "a6_large_vocab": ("answer_logits_memory_bytes", '''
def logits_memory_bytes(num_tokens, vocab_size, dtype=torch.float32):
    return num_tokens * vocab_size * 4                # assumes float32 whatever the dtype
''', "test_logits_memory_bytes"),
}

# A correct token_nll that writes to stderr, both through warnings and print.
NOISY_TOKEN_NLL = '''
import sys


def token_nll(logits, targets, *, ignore_index=-100):
    warnings.warn("token_nll: this implementation is slow on large vocabularies", UserWarning)
    print("token_nll called with logits of shape", tuple(logits.shape), file=sys.stderr)
    ignored = targets == ignore_index
    safe_targets = torch.where(ignored, torch.zeros_like(targets), targets)
    losses = torch.logsumexp(logits, dim=-1) - logits.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    return torch.where(ignored, torch.zeros_like(losses), losses)
'''


def read_notebook(path: Path) -> dict[str, Any]:
    """The notebook at ``path`` as plain JSON."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_notebook(notebook: dict[str, Any], path: Path) -> None:
    """Write ``notebook`` to ``path``, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook, indent=1), encoding="utf-8")


def grade_id(cell: dict[str, Any]) -> str | None:
    """The nbgrader grade_id of a cell, or None."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def cell_text(cell: dict[str, Any]) -> str:
    """A cell's source as one string."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def solutions_of(source_notebook: dict[str, Any]) -> dict[str, str]:
    """Every answer cell of the instructor's notebook with its solution markers removed."""
    answers = {}
    for cell in source_notebook["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            answers[meta["grade_id"]] = SOLUTION_REGION.sub("", cell_text(cell))
    return answers


def solution_lines(source_notebook: dict[str, Any], min_length: int = 24) -> set[str]:
    """Distinctive lines (stripped, at least ``min_length`` long) found only inside solution regions.

    Lines that the notebook also shows outside a solution (e.g. in a markdown cell that quotes
    a buggy loop for the student to fix) are given to the student on purpose and left out.
    """
    inside: set[str] = set()
    outside: set[str] = set()
    for cell in source_notebook["cells"]:
        text = cell_text(cell)
        for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", text, flags=re.DOTALL):
            inside |= {line.strip() for line in region.splitlines() if len(line.strip()) >= min_length}
        rest = re.sub(r"### BEGIN SOLUTION\n.*?### END SOLUTION", "", text, flags=re.DOTALL)
        outside |= {line.strip() for line in rest.splitlines()}
    return inside - outside


def filled_in(student_notebook: dict[str, Any], answers: dict[str, str]) -> dict[str, Any]:
    """A copy of the student version whose answer cells listed in ``answers`` hold those sources."""
    notebook = json.loads(json.dumps(student_notebook))
    seen = set()
    for cell in notebook["cells"]:
        gid = grade_id(cell)
        if gid in answers:
            cell["source"] = answers[gid].strip("\n") + "\n"
            seen.add(gid)
    missing = set(answers) - seen
    if missing:
        raise ValueError(f"answers: no answer cell with grade_id {sorted(missing)} in the notebook")
    return notebook
