"""The PGD attack on the IKL loss, AWP and the weight average, on tiny networks."""

from __future__ import annotations

import torch
from torch import nn

from ikl_zoo.losses import ikl_loss
from ikl_zoo.train import AdversarialWeightPerturbation, ModelEMA, ikl_pgd_attack


def _tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 10),
    )


def test_pgd_stays_in_the_ball_and_box_raises_the_loss_and_restores_the_mode():
    net = _tiny_net()
    net.train()
    torch.manual_seed(1)
    x = torch.rand(8, 3, 8, 8)
    x[:, :, 0, 0] = 0.0  # pixels on the box edge
    y = torch.arange(8)
    prior = torch.full((10, 10), 0.1)
    eps = 8 / 255
    x_adv = ikl_pgd_attack(net, x, y, prior, eps=eps, step_size=2 / 255, steps=5, alpha=1.0, beta=1.0)
    assert net.training
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > eps / 2  # it moved
    net.eval()
    with torch.no_grad():
        clean = net(x)
        attacked = ikl_loss(clean, net(x_adv), y, prior, alpha=1.0, beta=1.0)
        at_clean = ikl_loss(clean, clean, y, prior, alpha=1.0, beta=1.0)  # the entropy of s_clean
        x_random = (x + eps * torch.randn_like(x).sign()).clamp(0, 1)  # a random corner of the ball
        at_random = ikl_loss(clean, net(x_random), y, prior, alpha=1.0, beta=1.0)
    assert attacked - at_clean > 3 * (at_random - at_clean) > 0


def test_awp_perturbs_weights_by_gamma_of_their_norm_and_restores_them():
    net = _tiny_net()
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    awp = AdversarialWeightPerturbation(net, gamma=0.005, lr=0.2)
    x = torch.rand(8, 3, 8, 8)
    x_adv = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
    y = torch.arange(8)
    diff = awp.compute(x, x_adv, lambda clean, adv: nn.functional.cross_entropy(adv, y))
    assert set(diff) == {"0.weight", "5.weight"}  # kernels and matrices only
    awp.perturb(diff)
    for name, p in net.named_parameters():
        change = (p.detach() - before[name]).norm()
        if name in diff:
            torch.testing.assert_close(change, 0.005 * before[name].norm(), rtol=1e-4, atol=0)
        else:
            assert change == 0
    awp.restore(diff)
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), before[name], rtol=0, atol=1e-7)


def test_ema_averages_weights_and_batchnorm_statistics_and_copies_counters():
    net = _tiny_net()
    ema = ModelEMA(net, decay=0.9)
    start = {key: value.clone() for key, value in net.state_dict().items()}
    net.train()
    net(torch.rand(4, 3, 8, 8)).sum().backward()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)
    current = net.state_dict()
    for key, value in ema.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.9 * start[key] + 0.1 * current[key])
        else:
            assert torch.equal(value, current[key])
    assert not torch.equal(ema.state["1.running_mean"], start["1.running_mean"])
    ema.update(net, copy=True)
    for key, value in ema.state_dict().items():
        assert torch.equal(value, current[key])
