"""The tutorial plugin's own tests: its parts through factorlab's public API."""

import numpy as np
import torch
from factorlab_pose import CodeNormConfig, EnsembleConfig, HSICConfig, PoseConfig, code_norm, pose_factor
from factorlab_pose.adversaries import ensemble, hsic, hsic_penalty

import factorlab


def test_pose_bins_cover_the_yaw_range() -> None:
    factor = pose_factor(PoseConfig(bins=5))
    ids = factor.derive({"yaw": np.array([-0.5, -0.25, 0.0, 0.25, 0.49])})
    assert list(ids) == [0, 1, 2, 3, 4] and len(factor.classes) == 5


def test_hsic_is_near_zero_for_independent_labels_and_positive_for_dependent_ones() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (256,), generator=generator)
    noise = torch.randn(256, 4, generator=generator)
    dependent = noise + 3 * torch.nn.functional.one_hot(target, 3).float() @ torch.randn(3, 4, generator=generator)
    assert hsic_penalty(dependent, target, 3) > 5 * hsic_penalty(noise, target, 3) >= 0


def test_adversaries_follow_the_contract() -> None:
    code = torch.randn(16, 8, requires_grad=True)
    target = torch.randint(0, 4, (16,))
    penalty = hsic(HSICConfig(), in_features=8, num_classes=4)
    assert isinstance(penalty, factorlab.Adversary) and penalty.adversary_loss(code, target) is None
    assert penalty.logits(code) is None
    penalty.encoder_loss(code, target, 0.5).backward()
    assert code.grad is not None and torch.isfinite(code.grad).all()
    group = ensemble(EnsembleConfig(members=3), in_features=8, num_classes=4)
    assert group.logits(code).shape == (16, 4) and group.adversary_loss(code.detach(), target).requires_grad


def test_code_norm_reports_its_quantile() -> None:
    codes = {"exp": np.array([[3.0, 4.0], [0.0, 1.0]])}
    assert code_norm(CodeNormConfig(quantile=1.0))(codes, {}) == {"code_norm/exp/q1": 5.0}
