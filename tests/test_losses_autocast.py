"""The losses built on a log-softmax compute, under CPU torch.autocast, what F.cross_entropy computes there.

Under CPU autocast ``F.cross_entropy`` raises bfloat16 logits to float32 and
returns float32, while ``torch.log_softmax`` alone keeps bfloat16: a loss that
called it directly would return bfloat16 and differ from PyTorch by up to
0.2 %. Each test takes bfloat16 logits (as an autocast output layer returns
them), runs the loss and ``F.cross_entropy`` under ``torch.autocast("cpu",
dtype=torch.bfloat16)``, and compares value, dtype and the gradient with
respect to the logits. (chunked_cross_entropy's autocast tests are in
test_losses_chunked.py.)

Under CUDA autocast ``F.cross_entropy`` has no autocast kernel of its own and
keeps its log-probabilities in the half dtype; the facts behind that, which
the CPU can show, are pinned here, and the CUDA result in test_losses_cuda.py.

The distillation losses and ctc_loss follow ``F.kl_div``, ``F.cross_entropy``
with soft targets, TRL's ``generalized_jsd_loss`` and ``F.ctc_loss``, which
return float32 there too. Their references call ``F.log_softmax`` first, which
CPU autocast leaves in bfloat16 but CUDA autocast runs in float32 (for
kd_cross_entropy's ``F.cross_entropy`` on CUDA, see above); the tests compare
with the reference on the float32 logits and check that the CPU reference's
value and dtype agree.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from coursekit.losses import (
    causal_lm_loss,
    confidence_penalty_nll,
    ctc_backward_variables,
    ctc_forward_variables,
    ctc_loss,
    generalized_jsd,
    kd_cross_entropy,
    kd_loss,
    label_smoothed_nll,
    token_nll,
    top_k_kd_loss,
    top_k_teacher,
    vocab_parallel_cross_entropy,
)
from tests.strategies import IGNORE_INDEX, generator

pytestmark = pytest.mark.losses

REDUCTIONS = ("none", "sum", "mean")
B, T, V = 4, 6, 3000


def _logits_and_targets(seed: int, dtype: torch.dtype = torch.bfloat16) -> tuple[torch.Tensor, torch.Tensor]:
    # Logits of size ~8 over V = 3000: bfloat16 rounds the log-softmax by ~0.03, well above float32's error.
    g = generator(seed)
    logits = (torch.randn(B, T, V, generator=g) * 4).to(dtype).requires_grad_(True)
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[:, -2:] = IGNORE_INDEX
    return logits, targets


def _under_autocast(loss_fn, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss computed under CPU bfloat16 autocast, and its gradient w.r.t. ``logits`` (backward outside)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(logits)
    upstream = torch.linspace(0.5, 1.5, loss.numel()).reshape(loss.shape)
    (grad,) = torch.autograd.grad((loss * upstream).sum(), logits)
    return loss.detach(), grad


def _assert_same(got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor]) -> None:
    (value, grad), (want_value, want_grad) = got, want
    assert value.dtype == want_value.dtype == torch.float32
    torch.testing.assert_close(value, want_value)
    assert grad.dtype == want_grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad, want_grad)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str, **kwargs: object) -> torch.Tensor:
    losses = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction=reduction,
                             ignore_index=IGNORE_INDEX, **kwargs)
    return losses.reshape(targets.shape) if reduction == "none" else losses


@pytest.mark.parametrize("with_class_weight", [False, True])
def test_token_nll_under_autocast_is_f_cross_entropy_there(with_class_weight: bool) -> None:
    logits, targets = _logits_and_targets(1)
    weight = torch.rand(V, generator=generator(2)) + 0.5 if with_class_weight else None
    got = _under_autocast(lambda x: token_nll(x, targets, weight=weight), logits)
    want = _under_autocast(lambda x: _cross_entropy(x, targets, "none", weight=weight), logits)
    _assert_same(got, want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_label_smoothed_nll_under_autocast_is_f_cross_entropy_with_label_smoothing_there(reduction: str) -> None:
    logits, targets = _logits_and_targets(3)
    got = _under_autocast(lambda x: label_smoothed_nll(x, targets, 0.1, reduction=reduction), logits)
    want = _under_autocast(lambda x: _cross_entropy(x, targets, reduction, label_smoothing=0.1), logits)
    _assert_same(got, want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_confidence_penalty_nll_of_weight_0_under_autocast_is_f_cross_entropy_there(reduction: str) -> None:
    logits, targets = _logits_and_targets(4)
    got = _under_autocast(lambda x: confidence_penalty_nll(x, targets, 0.0, reduction=reduction), logits)
    want = _under_autocast(lambda x: _cross_entropy(x, targets, reduction), logits)
    _assert_same(got, want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_the_losses_without_an_f_cross_entropy_twin_compute_in_float32_under_autocast(reduction: str) -> None:
    # The fairseq smoothing and a positive confidence weight, against their formulas on
    # F.log_softmax of the float32 logits (outside autocast), the precision F.cross_entropy uses there.
    logits, targets = _logits_and_targets(5)
    counted = targets != IGNORE_INDEX
    epsilon, penalty = 0.1, 0.3

    def formula(per_token: torch.Tensor) -> torch.Tensor:
        per_token = torch.where(counted, per_token, torch.zeros_like(per_token))
        if reduction == "none":
            return per_token
        return per_token.sum() if reduction == "sum" else per_token.sum() / counted.sum()

    def fairseq(x: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(x.float(), dim=-1)
        nll = -log_p.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        spread = epsilon / (V - 1)
        return formula((1 - epsilon - spread) * nll - spread * log_p.sum(-1))

    def confidence(x: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(x.float(), dim=-1)
        nll = -log_p.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return formula(nll + penalty * (log_p.exp() * log_p).sum(-1))

    cases = [
        (lambda x: label_smoothed_nll(x, targets, epsilon, reduction=reduction, variant="fairseq"), fairseq),
        (lambda x: confidence_penalty_nll(x, targets, penalty, reduction=reduction), confidence),
    ]
    for loss_fn, reference in cases:
        value, grad = _under_autocast(loss_fn, logits)
        upstream = torch.linspace(0.5, 1.5, value.numel()).reshape(value.shape)
        want_value = reference(logits)
        (want_grad,) = torch.autograd.grad((want_value * upstream).sum(), logits)
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, want_value.detach())
        torch.testing.assert_close(grad, want_grad)


@pytest.mark.parametrize("upcast", [True, False])
@pytest.mark.parametrize("reduction", ["token_mean", "sum", "none"])
def test_causal_lm_loss_under_autocast_is_f_cross_entropy_of_the_shifted_logits_there(
    reduction: str, upcast: bool
) -> None:
    logits, ids = _logits_and_targets(6)
    ids = ids.clamp(min=0)
    loss_mask = torch.ones_like(ids, dtype=torch.bool)
    loss_mask[:, -2:] = False

    def reference(x: torch.Tensor) -> torch.Tensor:
        labels = ids.masked_fill(~loss_mask, IGNORE_INDEX)[:, 1:]
        per_token = _cross_entropy(x[:, :-1], labels, "none")
        if reduction == "none":
            return per_token.sum(-1)
        return per_token.sum() if reduction == "sum" else per_token.sum() / (labels != IGNORE_INDEX).sum()

    got = _under_autocast(
        lambda x: causal_lm_loss(x, ids, loss_mask=loss_mask, reduction=reduction, upcast=upcast), logits
    )
    _assert_same(got, _under_autocast(reference, logits))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_vocab_parallel_cross_entropy_under_autocast_is_f_cross_entropy_of_the_whole_logits_there(
    reduction: str,
) -> None:
    logits, targets = _logits_and_targets(7)
    got = _under_autocast(
        lambda x: vocab_parallel_cross_entropy([x[..., :1000], x[..., 1000:]], targets, reduction=reduction), logits
    )
    want = _under_autocast(lambda x: _cross_entropy(x, targets, reduction), logits)
    _assert_same(got, want)


def test_float64_logits_stay_float64_under_autocast_as_in_f_cross_entropy() -> None:
    logits, targets = _logits_and_targets(8, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = token_nll(logits, targets)
        want = _cross_entropy(logits, targets, "none")
    assert got.dtype == want.dtype == torch.float64
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("upcast", [True, False])
def test_causal_lm_loss_of_float64_logits_stays_float64_under_autocast_as_its_docstring_says(upcast: bool) -> None:
    logits, ids = _logits_and_targets(23, dtype=torch.float64)
    ids = ids.clamp(min=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = causal_lm_loss(logits, ids, upcast=upcast)
    labels = ids[:, 1:]
    want = _cross_entropy(logits[:, :-1], labels, "mean")
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_without_autocast_bfloat16_logits_give_bfloat16_losses_as_f_cross_entropy() -> None:
    logits, targets = _logits_and_targets(9)
    got, want = token_nll(logits, targets), _cross_entropy(logits, targets, "none")
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got, want)



@pytest.mark.parametrize(
    ("operator", "autocast_key", "registered"),
    [
        ("aten::cross_entropy_loss", "AutocastCPU", True),
        ("aten::cross_entropy_loss", "AutocastCUDA", False),
        ("aten::nll_loss", "AutocastCUDA", True),
        ("aten::log_softmax.int", "AutocastCUDA", True),
    ],
)
def test_autocast_kernels_are_registered_as_the_autocast_module_docstring_says(
    operator: str, autocast_key: str, registered: bool
) -> None:
    assert torch._C._dispatch_has_kernel_for_dispatch_key(operator, autocast_key) is registered, (
        f"coursekit/losses/_autocast.py says {operator} has {'an' if registered else 'no'} {autocast_key} kernel"
    )


@pytest.fixture
def cross_entropy_composite_under_cpu_autocast():
    """CPU autocast with cross_entropy_loss's own autocast kernel replaced by a fallthrough, as on CUDA
    (where it has none), and a kernel on log_softmax.int that records the dtype argument it is given."""
    library = torch.library.Library("aten", "IMPL")
    dtypes_given: list[torch.dtype | None] = []

    def record(logits: torch.Tensor, dim: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtypes_given.append(dtype)
        without_cpu_autocast = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)
        with torch._C._ExcludeDispatchKeyGuard(without_cpu_autocast):
            return torch.ops.aten.log_softmax.int(logits, dim, dtype)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "overriding a previously registered kernel"
            library.impl("cross_entropy_loss", torch.library.fallthrough_kernel, "AutocastCPU")
        library.impl("log_softmax.int", record, "AutocastCPU")
        yield dtypes_given
    finally:
        library._destroy()
    # The other tests of this process need CPU autocast's own kernels back.
    assert torch._C._dispatch_has_kernel_for_dispatch_key("aten::cross_entropy_loss", "AutocastCPU")
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("aten::log_softmax.int", "AutocastCPU")


def test_f_cross_entropy_asks_log_softmax_for_the_logits_own_dtype_which_cuda_autocast_respects(
    cross_entropy_composite_under_cpu_autocast: list,
) -> None:
    # _autocast.py: the composite kernel "calls log_softmax with the input's own dtype given explicitly",
    # and autocast_mode.h's set_opt_dtype policy keeps an explicit dtype, so CUDA's result carries the
    # half rounding of the log-probabilities.
    logits, targets = _logits_and_targets(24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        F.cross_entropy(logits.flatten(0, -2), targets.flatten())
    assert cross_entropy_composite_under_cpu_autocast == [torch.bfloat16]



# --- the distillation losses and ctc_loss -------------------------------------------------------------

TEMPERATURE = 2.0


def _teacher(seed: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return (torch.randn(B, T, V, generator=generator(seed)) * 4).to(dtype)


def _kl_div_expression(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """kd_loss's documented reference (2-D input, "token_mean"): F.kl_div of the tempered log-softmaxes times T**2."""
    log_p = F.log_softmax(student.flatten(0, -2) / TEMPERATURE, dim=-1)
    log_q = F.log_softmax(teacher.flatten(0, -2) / TEMPERATURE, dim=-1)
    return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean") * TEMPERATURE**2


def _soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """kd_cross_entropy's definition through F.cross_entropy with the teacher's probabilities as targets."""
    targets = F.softmax(teacher.flatten(0, -2) / TEMPERATURE, dim=-1)
    return F.cross_entropy(student.flatten(0, -2) / TEMPERATURE, targets)


def _trl_generalized_jsd(beta: float, temperature: float = TEMPERATURE):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    def reference(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return GKDTrainer.generalized_jsd_loss(student, teacher, beta=beta, temperature=temperature, reduction="sum")

    return reference


def _assert_as_the_reference_on_float32_logits(loss_fn, reference, logits: torch.Tensor) -> None:
    """``loss_fn`` under autocast: float32, equal in value and gradient to ``reference`` on the float32
    logits, and in dtype (and, to bfloat16's rounding of the log-probabilities, value) to ``reference``
    under CPU autocast."""
    value, grad = _under_autocast(loss_fn, logits)
    want_value = reference(logits.float())
    upstream = torch.linspace(0.5, 1.5, value.numel()).reshape(value.shape)
    (want_grad,) = torch.autograd.grad((want_value * upstream).sum(), logits)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cpu_reference = reference(logits).detach()
    assert value.dtype == want_value.dtype == cpu_reference.dtype == torch.float32
    torch.testing.assert_close(value, want_value.detach())
    torch.testing.assert_close(value, cpu_reference, rtol=1e-2, atol=1e-2)
    assert grad.dtype == want_grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad, want_grad)


def test_kd_loss_under_autocast_is_its_f_kl_div_expression_in_float32() -> None:
    logits, teacher = _logits_and_targets(10)[0], _teacher(11)
    _assert_as_the_reference_on_float32_logits(
        lambda x: kd_loss(x, teacher, temperature=TEMPERATURE), lambda x: _kl_div_expression(x, teacher.to(x.dtype)), logits
    )


def test_kd_cross_entropy_under_autocast_is_f_cross_entropy_of_the_soft_targets_in_float32() -> None:
    logits, teacher = _logits_and_targets(12)[0], _teacher(13)
    _assert_as_the_reference_on_float32_logits(
        lambda x: kd_cross_entropy(x, teacher, temperature=TEMPERATURE),
        lambda x: _soft_cross_entropy(x, teacher.to(x.dtype)),
        logits,
    )


def test_top_k_kd_loss_with_k_v_under_autocast_is_kd_losss_f_kl_div_expression_in_float32() -> None:
    logits, teacher = _logits_and_targets(14)[0], _teacher(15)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = top_k_teacher(teacher, V, temperature=TEMPERATURE)
    assert kept[0].dtype == torch.float32
    _assert_as_the_reference_on_float32_logits(
        lambda x: top_k_kd_loss(x, *kept, temperature=TEMPERATURE), lambda x: _kl_div_expression(x, teacher.to(x.dtype)), logits
    )


@pytest.mark.slow
@pytest.mark.ecosystem
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_generalized_jsd_under_autocast_is_trls_generalized_jsd_loss_in_float32(beta: float) -> None:
    logits, teacher = _logits_and_targets(16)[0], _teacher(17)
    trl = _trl_generalized_jsd(beta)
    _assert_as_the_reference_on_float32_logits(
        lambda x: generalized_jsd(x, teacher, beta=beta, temperature=TEMPERATURE, reduction="sum"),
        lambda x: trl(x, teacher.to(x.dtype)),
        logits,
    )


def _ctc_problem() -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    g = generator(18)
    frames_logits = (torch.randn(50, B, 20, generator=g) * 3).bfloat16().requires_grad_(True)
    targets = torch.randint(1, 20, (B, 10), generator=g)
    return frames_logits, targets, [50, 48, 45, 50], [10, 9, 8, 7]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ctc_loss_under_autocast_is_f_ctc_loss_there(reduction: str) -> None:
    # F.ctc_loss is on CPU autocast's float32 list, so here the reference itself runs in float32.
    frames_logits, targets, input_lengths, target_lengths = _ctc_problem()

    def loss_of(ctc):
        return lambda x: ctc(torch.log_softmax(x, dim=-1), targets, input_lengths, target_lengths, reduction=reduction)

    (value, grad), (want_value, want_grad) = (_under_autocast(loss_of(ctc_loss), frames_logits),
                                              _under_autocast(loss_of(F.ctc_loss), frames_logits))
    assert value.dtype == want_value.dtype == torch.float32
    torch.testing.assert_close(value, want_value)
    assert grad.dtype == want_grad.dtype == torch.bfloat16
    # PyTorch's kernel and autograd through the recursion reach the float32 gradient of the log-probs
    # by different sums, and log_softmax's backward then runs in bfloat16: the results may be one
    # bfloat16 step (2**-7 of the largest entry) apart (measured: exactly that, in every reduction;
    # both are 3.3 to 4.4 such steps from the float64 gradient).
    torch.testing.assert_close(grad, want_grad, rtol=0, atol=2**-7 * float(want_grad.abs().max()))


def test_the_ctc_tables_under_autocast_are_float32() -> None:
    frames_logits, targets, _, _ = _ctc_problem()
    log_probs = torch.log_softmax(frames_logits.detach()[:, 0], dim=-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        alpha = ctc_forward_variables(log_probs, targets[0])
        omega = ctc_backward_variables(log_probs, targets[0])
    assert alpha.dtype == omega.dtype == torch.float32
    torch.testing.assert_close(alpha, ctc_forward_variables(log_probs.float(), targets[0]))
    torch.testing.assert_close(omega, ctc_backward_variables(log_probs.float(), targets[0]))


def _each_new_loss(logits: torch.Tensor, teacher: torch.Tensor) -> dict[str, torch.Tensor]:
    kept = top_k_teacher(teacher, 50)
    frames_log_probs = torch.log_softmax(logits[:, :, :20].transpose(0, 1), dim=-1)
    return {
        "kd_loss": kd_loss(logits, teacher),
        "kd_cross_entropy": kd_cross_entropy(logits, teacher),
        "top_k_teacher": kept[0],
        "top_k_kd_loss": top_k_kd_loss(logits, *kept),
        "generalized_jsd": generalized_jsd(logits, teacher),
        "ctc_loss": ctc_loss(frames_log_probs, torch.ones(B, 2, dtype=torch.long), [T] * B, [2] * B),
    }


def test_float64_inputs_of_the_distillation_losses_and_ctc_loss_stay_float64_under_autocast() -> None:
    logits, teacher = _logits_and_targets(19, dtype=torch.float64)[0].detach(), _teacher(20, torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = _each_new_loss(logits, teacher)
    outside = _each_new_loss(logits, teacher)
    for name, value in under.items():
        assert value.dtype == torch.float64, name
        torch.testing.assert_close(value, outside[name], rtol=0, atol=0, msg=name)


def test_without_autocast_the_distillation_losses_and_ctc_loss_keep_bfloat16() -> None:
    logits, teacher = _logits_and_targets(21)[0].detach(), _teacher(22)
    exact = _each_new_loss(logits.double(), teacher.double())
    for name, value in _each_new_loss(logits, teacher).items():
        assert value.dtype == torch.bfloat16, name
        torch.testing.assert_close(value.double(), exact[name], rtol=2e-2, atol=2e-2, msg=name)


def _autocast_list(header: str, name: str) -> set[str]:
    """The op names of the ``#define name(_)`` list in autocast_mode.h (``_(op)`` or ``_(op, overload)``)."""
    body = re.search(rf"#define {name}\(_\)(.*?)\n\n", header, re.DOTALL)
    assert body is not None, f"{name} is gone from the installed autocast_mode.h: recheck coursekit/losses/_autocast.py"
    return set(re.findall(r"_\((\w+)", body.group(1)))


def test_the_cuda_float32_lists_hold_what_the_autocast_module_docstring_says() -> None:
    # _autocast.py's CUDA claims come from these lists of the installed header; a torch upgrade
    # that changes them fails here.
    header = (Path(torch.__file__).parent / "include" / "ATen" / "autocast_mode.h").read_text()
    fp32 = _autocast_list(header, "AT_FORALL_FP32")
    fp32_set_dtype = _autocast_list(header, "AT_FORALL_FP32_SET_OPT_DTYPE")
    assert {"nll_loss", "kl_div", "logsumexp"} <= fp32
    assert {"log_softmax", "softmax"} <= fp32_set_dtype
    # and the steps of the sums and exponentials of the other losses (the "CUDA only" paragraph)
    assert {"exp", "log", "pow"} <= fp32 and {"sum", "cumsum"} <= fp32_set_dtype
    assert "ctc_loss" not in fp32 | fp32_set_dtype
    assert not {"div", "true_divide"} & (fp32 | fp32_set_dtype)


def test_cpu_autocast_computes_in_the_dtypes_the_autocast_module_docstring_says() -> None:
    logits = torch.randn(4, 5).bfloat16()
    targets = torch.tensor([0, 1, 2, 3])
    log_probs = torch.randn(6, 2, 4).log_softmax(-1).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        float32_ops = {
            "F.cross_entropy": F.cross_entropy(logits, targets),
            "F.nll_loss": F.nll_loss(logits, targets),
            "F.kl_div": F.kl_div(logits, logits, log_target=True, reduction="sum"),
            "F.ctc_loss": F.ctc_loss(log_probs, torch.tensor([[1, 2], [2, 3]]), [6, 6], [2, 2]),
        }
        kept_ops = {"F.log_softmax": F.log_softmax(logits, -1), "F.softmax": F.softmax(logits, -1),
                    "torch.logsumexp": torch.logsumexp(logits, -1), "logits / temperature": logits / 3.0}
    assert {name: out.dtype for name, out in float32_ops.items()} == dict.fromkeys(float32_ops, torch.float32)
    assert {name: out.dtype for name, out in kept_ops.items()} == dict.fromkeys(kept_ops, torch.bfloat16)


# --- a temperature whose division rounds: coursekit's float32 is the closer to float64 ----------------

ODD_TEMPERATURE = 3.0  # 1/3 is no power of two: logits / 3 in bfloat16 rounds


def _kl_of_scaled(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """kd_loss's F.kl_div expression on logits already divided by the temperature."""
    log_p, log_q = F.log_softmax(student.flatten(0, -2), dim=-1), F.log_softmax(teacher.flatten(0, -2), dim=-1)
    return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean") * ODD_TEMPERATURE**2


def _soft_cross_entropy_of_scaled(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(student.flatten(0, -2), F.softmax(teacher.flatten(0, -2), dim=-1))


def _trl_jsd_of_scaled(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    # TRL divides by its temperature first; 1 here, the division by 3 having been done by the caller.
    return _trl_generalized_jsd(0.5, temperature=1.0)(student, teacher)


def _top_k_kd_loss_with_k_v(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    return top_k_kd_loss(student, *top_k_teacher(teacher, V, temperature=temperature), temperature=temperature)


#: (name, coursekit's loss of (student, teacher, temperature), the reference of the tempered logits).
TEMPERED_LOSSES = [
    ("kd_loss", lambda s, t, tau: kd_loss(s, t, temperature=tau), _kl_of_scaled),
    ("top_k_kd_loss", _top_k_kd_loss_with_k_v, _kl_of_scaled),
    ("kd_cross_entropy", lambda s, t, tau: kd_cross_entropy(s, t, temperature=tau), _soft_cross_entropy_of_scaled),
    pytest.param("generalized_jsd", lambda s, t, tau: generalized_jsd(s, t, temperature=tau, reduction="sum"),
                 _trl_jsd_of_scaled, marks=pytest.mark.ecosystem),
]


@pytest.mark.parametrize(("name", "loss", "reference"), TEMPERED_LOSSES, ids=lambda v: v if isinstance(v, str) else "")
def test_at_a_rounding_temperature_the_distillation_losses_are_closer_to_float64_than_their_references(
    name: str, loss, reference
) -> None:
    # The references divide first: logits / T is on no autocast list and stays bfloat16 on both devices
    # (and on the CPU their log-softmax and softmax stay bfloat16 too). coursekit divides in float32.
    student, teacher = _logits_and_targets(20)[0].detach(), _teacher(21)
    exact = reference(student.double() / ODD_TEMPERATURE, teacher.double() / ODD_TEMPERATURE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = loss(student, teacher, ODD_TEMPERATURE)
        cpu_reference = reference(student / ODD_TEMPERATURE, teacher / ODD_TEMPERATURE)
    # CUDA autocast's order, run on the CPU: the division in bfloat16, everything after it in float32.
    cuda_like_reference = reference((student / ODD_TEMPERATURE).float(), (teacher / ODD_TEMPERATURE).float())
    assert ours.dtype == cpu_reference.dtype == torch.float32

    def error(value: torch.Tensor) -> float:
        return abs(value.double().item() - exact.item()) / abs(exact.item())

    assert error(ours) < error(cuda_like_reference), (error(ours), error(cuda_like_reference))
    assert error(ours) < error(cpu_reference), (error(ours), error(cpu_reference))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ctc_loss_computes_half_precision_log_probs_that_f_ctc_loss_refuses(dtype: torch.dtype) -> None:
    # A difference from F.ctc_loss that ctc_loss's docstring lists: PyTorch has no half-precision CTC kernel.
    frames_logits, targets, input_lengths, target_lengths = _ctc_problem()
    half = frames_logits.detach().float().log_softmax(-1).to(dtype)
    with pytest.raises(NotImplementedError, match="ctc_loss"):
        F.ctc_loss(half, targets, input_lengths, target_lengths)
    loss = ctc_loss(half, targets, input_lengths, target_lengths)
    assert loss.dtype == dtype
    exact = F.ctc_loss(half.double(), targets, input_lengths, target_lengths)
    torch.testing.assert_close(loss.double(), exact, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ctc_of_half_precision_log_probs_is_as_exact_as_one_rounding_on_a_long_input(dtype: torch.dtype) -> None:
    """Losses review (stop 41): run in bfloat16 itself, the recursion's rounding added up over 200 frames (a
    loss of 1120 for 1086, gradients off by 0.9). Computed in float32, value and gradient are the float64
    ones on the same rounded inputs, rounded once to the half dtype."""
    generator = torch.Generator().manual_seed(3)
    frames, batch, classes, labels = 200, 2, 30, 50
    log_probs = torch.randn(frames, batch, classes, generator=generator, dtype=torch.float64).log_softmax(-1)
    half = log_probs.to(dtype).requires_grad_()
    targets = torch.randint(1, classes, (batch, labels), generator=generator)
    lengths, target_lengths = [frames] * batch, [labels] * batch
    loss = ctc_loss(half, targets, lengths, target_lengths, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, half)
    exact = F.ctc_loss(half.detach().double(), targets, lengths, target_lengths, reduction="sum")
    # The float64 gradient of the same rounded inputs: ctc_loss's own, which tests/test_losses_ctc.py checks
    # by gradcheck and against F.ctc_loss (whose kernel returns the gradient of the logits behind a
    # log-softmax, not of the log-probabilities themselves: see ctc_loss's docstring).
    exact_input = half.detach().double().requires_grad_()
    (exact_gradient,) = torch.autograd.grad(
        ctc_loss(exact_input, targets, lengths, target_lengths, reduction="sum"), exact_input)
    assert loss.dtype == gradient.dtype == dtype
    spacing = torch.finfo(dtype).eps
    # one rounding of the result: at most half a spacing of its binade, relative
    assert abs(loss.double().item() - exact.item()) <= spacing * abs(exact.item()), (loss.item(), exact.item())
    assert exact_gradient.abs().max().item() <= 1
    assert (gradient.double() - exact_gradient).abs().max().item() <= spacing, (
        (gradient.double() - exact_gradient).abs().max().item())
    for sequence in range(batch):
        one, one_target = half.detach()[:, sequence], targets[sequence]
        exact_alpha = ctc_forward_variables(one.double(), one_target)
        exact_omega = ctc_backward_variables(one.double(), one_target)
        for table, exact_table in ((ctc_forward_variables(one, one_target), exact_alpha),
                                   (ctc_backward_variables(one, one_target), exact_omega)):
            assert table.dtype == dtype
            reachable = torch.isfinite(exact_table)
            assert torch.equal(torch.isfinite(table), reachable)
            error = (table.double() - exact_table)[reachable].abs() / exact_table[reachable].abs().clamp(min=1)
            assert error.max().item() <= spacing, error.max().item()



def test_cpu_autocast_keeps_sums_and_exponentials_in_the_half_dtype_as_the_module_docstring_says() -> None:
    values = torch.rand(3, 4).bfloat16() + 0.5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        results = [values.exp(), values.log(), values.pow(2), values.sum(), values.cumsum(-1)]
    assert [result.dtype for result in results] == [torch.bfloat16] * 5
