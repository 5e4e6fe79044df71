"""Property tests of factorlab.losses: the mathematical properties each loss must have."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from factorlab.losses import (
    AdversaryLoss,
    ClassificationLoss,
    ReconstructionConfig,
    ReconstructionLoss,
    UniformConfusion,
    adversary_loss,
    classification_loss,
    reconstruction_loss,
    uniform_confusion,
)
from factorlab.plugins import get_host

# unit roundoff of each input dtype: rounding a logit x to it moves x by at most u*|x|
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
FP32_U = UNIT_ROUNDOFF[torch.float32]


@st.composite
def logits_arrays(draw, bound: float = 30.0, max_batch: int = 6, max_classes: int = 10) -> np.ndarray:
    """A (B, K) float64 array of finite logits in [-bound, bound]."""
    b = draw(st.integers(1, max_batch))
    k = draw(st.integers(2, max_classes))
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    return draw(arrays(np.float64, (b, k), elements=elements))


def reference_uniform_confusion(logits: torch.Tensor) -> float:
    """-(1/K) sum log softmax, averaged over rows, in float64."""
    return float(-torch.log_softmax(logits.detach().double(), dim=-1).mean())


@settings(deadline=None, max_examples=60)
@given(logits_arrays())
def test_uniform_confusion_is_at_least_log_k(x: np.ndarray) -> None:
    logits = torch.tensor(x, dtype=torch.float32)
    k = x.shape[1]
    loss = uniform_confusion(logits)
    # float32 log-softmax of logits of size <= 30 is exact to a few ulps of 60
    assert float(loss) >= math.log(k) - 1e-5
    assert float(loss) == pytest.approx(reference_uniform_confusion(logits), abs=1e-5)


@settings(deadline=None, max_examples=40)
@given(
    st.integers(1, 6),
    st.integers(2, 10),
    st.floats(-1e3, 1e3),
    st.data(),
)
def test_uniform_confusion_equals_log_k_iff_rows_are_constant(b: int, k: int, level: float, data) -> None:
    offsets = torch.tensor(data.draw(st.lists(st.floats(-1e3, 1e3), min_size=b, max_size=b)), dtype=torch.float32)
    constant = (offsets + level)[:, None].expand(b, k).contiguous()
    assert float(uniform_confusion(constant)) == pytest.approx(math.log(k), abs=1e-6)

    # move one entry of one row by |d| >= 0.5: that row's excess over log K is >= 0.0098 (K <= 10), the batch's
    # >= 0.0098 / B, far above float32 error; constant rows add nothing, so the loss must rise above log K
    row = data.draw(st.integers(0, b - 1))
    col = data.draw(st.integers(0, k - 1))
    d = data.draw(st.floats(0.5, 10.0)) * data.draw(st.sampled_from([-1.0, 1.0]))
    bumped = constant - constant[:, :1]  # rows of zeros: the bump is then exact in float32
    bumped[row, col] += d
    excess = float(uniform_confusion(bumped)) - math.log(k)
    assert excess > 0.0098 / b - 1e-6
    assert excess == pytest.approx(reference_uniform_confusion(bumped) - math.log(k), abs=1e-5)


@settings(deadline=None, max_examples=60)
@given(logits_arrays(), st.data())
def test_uniform_confusion_is_invariant_to_a_constant_per_row(x: np.ndarray, data) -> None:
    logits = torch.tensor(x, dtype=torch.float32)
    shift = torch.tensor(data.draw(st.lists(st.floats(-100, 100), min_size=len(x), max_size=len(x))))
    shifted = logits + shift[:, None].float()
    # adding the shift rounds each logit (|value| <= 130) by <= 130 * 2^-24; the loss moves by <= twice that
    assert float(uniform_confusion(shifted)) == pytest.approx(float(uniform_confusion(logits)), abs=1e-4)


@settings(deadline=None, max_examples=60)
@given(logits_arrays())
def test_uniform_confusion_gradient_is_softmax_minus_uniform_over_batch(x: np.ndarray) -> None:
    logits = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    b, k = x.shape
    uniform_confusion(logits).backward()
    expected = (torch.softmax(torch.tensor(x), dim=-1) - 1.0 / k) / b
    torch.testing.assert_close(logits.grad.double(), expected, atol=1e-6, rtol=1e-5)


@settings(deadline=None, max_examples=60)
@given(logits_arrays())
def test_uniform_confusion_equals_cross_entropy_with_uniform_soft_targets(x: np.ndarray) -> None:
    logits = torch.tensor(x, dtype=torch.float32)
    b, k = x.shape
    soft = torch.full((b, k), 1.0 / k, dtype=torch.float64)
    expected = F.cross_entropy(logits.double(), soft)
    assert float(uniform_confusion(logits)) == pytest.approx(float(expected), rel=1e-6, abs=1e-5)
    assert float(UniformConfusion()(logits)) == pytest.approx(float(expected), rel=1e-6, abs=1e-5)


@settings(deadline=None, max_examples=60)
@given(logits_arrays(bound=1e4), st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
def test_uniform_confusion_is_finite_and_correct_for_huge_logits_in_any_dtype(x: np.ndarray, dtype) -> None:
    logits = torch.tensor(x).to(dtype).requires_grad_(True)
    loss = uniform_confusion(logits)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    max_abs = float(np.abs(x).max())
    # loss = logsumexp(x) - mean(x): perturbing every logit by <= u*max|x| moves it by <= 2*u*max|x|
    computed_tol = 2 * FP32_U * max_abs + 1e-5  # float32 arithmetic on the given (rounded) logits
    rounding_tol = 2 * UNIT_ROUNDOFF[dtype] * max_abs  # rounding the float64 logits to `dtype`
    assert float(loss.detach()) == pytest.approx(reference_uniform_confusion(logits.detach()), abs=computed_tol)
    assert float(loss.detach()) == pytest.approx(
        reference_uniform_confusion(torch.tensor(x)), abs=computed_tol + rounding_tol
    )
    loss.backward()
    assert logits.grad.dtype == dtype
    assert torch.isfinite(logits.grad).all()


@settings(deadline=None, max_examples=40)
@given(logits_arrays(), st.randoms(use_true_random=False))
def test_losses_are_invariant_to_batch_order(x: np.ndarray, rng) -> None:
    logits = torch.tensor(x, dtype=torch.float32)
    b, k = x.shape
    target = torch.tensor([rng.randrange(k) for _ in range(b)])
    perm = torch.tensor(rng.sample(range(b), b))
    for loss, args, permuted in [
        (uniform_confusion, (logits,), (logits[perm],)),
        (adversary_loss, (logits, target), (logits[perm], target[perm])),
        (classification_loss, (logits, target), (logits[perm], target[perm])),
    ]:
        # only the order of the float32 sum over rows changes
        assert float(loss(*permuted)) == pytest.approx(float(loss(*args)), rel=1e-6, abs=1e-6)


@settings(deadline=None, max_examples=60)
@given(logits_arrays(), st.randoms(use_true_random=False))
def test_cross_entropy_losses_match_torch_and_have_the_softmax_gradient(x: np.ndarray, rng) -> None:
    b, k = x.shape
    target = torch.tensor([rng.randrange(k) for _ in range(b)])
    expected = F.cross_entropy(torch.tensor(x), target)
    for loss in (adversary_loss, classification_loss, AdversaryLoss(), ClassificationLoss()):
        logits = torch.tensor(x, dtype=torch.float32, requires_grad=True)
        value = loss(logits, target)
        assert float(value.detach()) == pytest.approx(float(expected), rel=1e-6, abs=1e-5)
        value.backward()
        grad = (torch.softmax(torch.tensor(x), dim=-1) - F.one_hot(target, k)) / b
        torch.testing.assert_close(logits.grad.double(), grad, atol=1e-6, rtol=1e-5)


@settings(deadline=None, max_examples=30)
@given(logits_arrays(bound=1e4), st.sampled_from([torch.bfloat16, torch.float16]), st.randoms(use_true_random=False))
def test_cross_entropy_losses_are_finite_for_huge_low_precision_logits(x: np.ndarray, dtype, rng) -> None:
    logits = torch.tensor(x).to(dtype)
    target = torch.tensor([rng.randrange(x.shape[1]) for _ in range(len(x))])
    loss = adversary_loss(logits, target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    expected = F.cross_entropy(logits.double(), target)
    assert float(loss) == pytest.approx(float(expected), abs=2 * FP32_U * float(np.abs(x).max()) + 1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_log_softmax_runs_in_float32_under_autocast(dtype) -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 5)
    x = torch.randn(8, 16) * 1e3  # logits of size ~1e4
    target = torch.randint(0, 5, (8,))
    with torch.autocast("cpu", dtype=dtype):
        logits = layer(x)
        confusion = uniform_confusion(logits)
        adversary = adversary_loss(logits, target)
    assert logits.dtype == dtype  # autocast did lower the layer's precision...
    for value, expected in [
        (confusion, reference_uniform_confusion(logits)),
        (adversary, float(F.cross_entropy(logits.detach().double(), target))),
    ]:
        assert value.dtype == torch.float32  # ...but not the loss's
        assert float(value.detach()) == pytest.approx(expected, rel=1e-5)


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.data())
def test_reconstruction_loss_matches_its_definition(b: int, c: int, s: int, data) -> None:
    shape = (b, c, s, s)
    values = st.floats(0.0, 1.0)
    x = torch.tensor(data.draw(arrays(np.float64, shape, elements=values)), dtype=torch.float32)
    x_hat = torch.tensor(data.draw(arrays(np.float64, shape, elements=values)), dtype=torch.float32)
    l2 = reconstruction_loss(x, x_hat)
    assert float(l2) == pytest.approx(float(F.mse_loss(x.double(), x_hat.double())), rel=1e-6, abs=1e-7)
    assert float(reconstruction_loss(x, x_hat, "l1")) == pytest.approx(
        float(F.l1_loss(x.double(), x_hat.double())), rel=1e-6, abs=1e-7
    )
    # the paper's ||x - x'||^2 per image is the element mean times the elements per image
    per_image = reconstruction_loss(x, x_hat, reduction="image_sum")
    assert float(per_image) == pytest.approx(float(l2) * c * s * s, rel=1e-5, abs=1e-6)
    assert float(reconstruction_loss(x_hat, x)) == pytest.approx(float(l2), rel=1e-6)  # symmetric
    assert float(reconstruction_loss(x, x.clone())) == 0.0
    assert float(ReconstructionLoss("l2")(x, x_hat)) == pytest.approx(float(l2), rel=1e-6)


def test_reconstruction_loss_is_float32_for_half_inputs() -> None:
    x = torch.rand(2, 3, 8, 8)
    x_hat = torch.rand(2, 3, 8, 8)
    for dtype in (torch.float16, torch.bfloat16):
        loss = ReconstructionLoss("l2")(x, x_hat.to(dtype))
        assert loss.dtype == torch.float32
        ref = float(F.mse_loss(x.double(), x_hat.to(dtype).double()))
        assert float(loss) == pytest.approx(ref, rel=1e-5)


def test_reconstruction_loss_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="'l2' or 'l1'"):
        ReconstructionLoss("l3")  # type: ignore[arg-type]


def test_registered_losses_build_from_their_config() -> None:
    registry = get_host().registry("losses")
    assert {"l1", "l2"} <= set(registry.names())
    x, x_hat = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    built = {name: registry.get(name).factory(registry.get(name).config.model_validate({})) for name in ("l1", "l2")}
    assert float(built["l2"](x, x_hat)) == pytest.approx(0.25)
    assert float(built["l1"](x, x_hat)) == pytest.approx(0.5)
    summed = registry.get("l2").factory(ReconstructionConfig(reduction="image_sum"))
    assert float(summed(x, x_hat)) == pytest.approx(0.25 * 48)


@pytest.mark.parametrize(
    "module, make_args",
    [
        (UniformConfusion(), lambda: (torch.randn(4, 7, requires_grad=True),)),
        (AdversaryLoss(), lambda: (torch.randn(4, 7, requires_grad=True), torch.randint(0, 7, (4,)))),
        (ClassificationLoss(), lambda: (torch.randn(4, 7, requires_grad=True), torch.randint(0, 7, (4,)))),
        (ReconstructionLoss("l2"), lambda: (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8, requires_grad=True))),
        (ReconstructionLoss("l1", "image_sum"), lambda: (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))),
    ],
)
def test_losses_compile_as_one_graph(module, make_args) -> None:
    # fullgraph=True fails on any graph break, such as an `.item()` host sync or a data-dependent shape.
    # aot_eager traces forward and backward like inductor does, without the C++ compile (~25 s cold on our CPU).
    torch.manual_seed(0)
    torch._dynamo.reset()
    args = make_args()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    eager_value = module(*args)
    compiled_value = compiled(*args)
    torch.testing.assert_close(compiled_value, eager_value)
    leaf = next((a for a in args if a.requires_grad), None)
    if leaf is not None:
        (eager_grad,) = torch.autograd.grad(eager_value, leaf)
        (compiled_grad,) = torch.autograd.grad(compiled_value, leaf)
        torch.testing.assert_close(compiled_grad, eager_grad)
