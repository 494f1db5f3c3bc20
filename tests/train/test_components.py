"""The PGD attack on the IKL loss, AWP and the weight average, on tiny networks."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ikl_zoo.losses import ikl_loss
from ikl_zoo.train import AdversarialWeightPerturbation, IKLATTrainer, ModelEMA, get_recipe, ikl_pgd_attack


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


def _pairwise_ikl(z_m, z_n, y, prior, alpha, beta):
    """IKL written out as the issue states it: pairwise wMSE normalised by sum(w), CE on S(s_m)."""
    weights = prior[y]
    outer = weights[:, :, None] * weights[:, None, :]
    d_m, d_n = z_m[:, :, None] - z_m[:, None, :], z_n[:, :, None] - z_n[:, None, :]
    wmse = 0.25 * (outer * (d_m - d_n).pow(2)).sum() / outer.sum()
    ce = -(torch.softmax(z_m, 1).detach() * torch.log_softmax(z_n, 1)).sum(1).mean()
    return beta * wmse + alpha * ce


def test_a_training_step_is_the_released_procedure_written_out():
    """One IKLATTrainer step against the procedure spelled out by hand: attack and training loss with their
    own alpha/beta, AWP on CE + IKL, SGD with momentum and weight decay, the prior fed the clean logits."""
    recipe = get_recipe(
        "cifar100", dataset="cifar10", eps=8 / 255, eps_ramp_epochs=4, epochs=8, attack_steps=2,
        attack_alpha=0.5, attack_beta=2.0, alpha=3.0, beta=20.0, awp_gamma=0.01, awp_warmup_epochs=2, lr=0.1,
    )
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(8, 3, 8, 8, generator=generator)
    y = torch.arange(8) % 10
    prior = torch.softmax(2 * torch.randn(10, 10, generator=generator), 1)

    net = _tiny_net(seed=2)
    trainer = IKLATTrainer(net, recipe, device="cpu")
    trainer.class_prior.prior.copy_(prior)
    reference = _tiny_net(seed=2)
    torch.manual_seed(11)
    trainer.step(x, y, epoch=2)

    # The same step by hand.
    torch.manual_seed(11)
    eps = 8 / 255 * 2 / 4
    reference.eval()
    with torch.no_grad():
        clean = reference(x)
    x_adv = x + 0.001 * torch.randn_like(x)
    for _ in range(2):
        x_adv.requires_grad_(True)
        attack = _pairwise_ikl(clean, reference(x_adv), y, prior, 0.5, 2.0)
        (grad,) = torch.autograd.grad(attack, [x_adv])
        x_adv = torch.min(torch.max(x_adv.detach() + eps / 2 * grad.sign(), x - eps), x + eps).clamp(0, 1)
    reference.train()
    proxy = copy.deepcopy(reference)
    proxy_clean = proxy(x)
    proxy_loss = nn.functional.cross_entropy(proxy_clean, y) + _pairwise_ikl(
        proxy_clean, proxy(x_adv), y, prior, 3.0, 20.0
    )
    proxy_grads = torch.autograd.grad(-proxy_loss, list(proxy.parameters()))
    diff = {}
    with torch.no_grad():
        for (name, weight), grad in zip(reference.named_parameters(), proxy_grads, strict=True):
            if weight.ndim > 1:
                delta = -0.1 * grad
                diff[name] = weight.norm() / delta.norm() * delta
                weight.add_(0.01 * diff[name])
    optimizer = torch.optim.SGD(reference.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=5e-4)
    logits_adv = reference(x_adv)
    logits_clean = reference(x)
    robust = _pairwise_ikl(logits_clean, logits_adv, y, prior, 3.0, 20.0)
    (nn.functional.cross_entropy(logits_clean, y) + robust).backward()
    optimizer.step()
    with torch.no_grad():
        for name, weight in reference.named_parameters():
            if name in diff:
                weight.sub_(0.01 * diff[name])

    for (name, ours), theirs in zip(net.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)
    expected_sums = torch.zeros(10, 10, dtype=torch.float64).index_add_(
        0, y, torch.softmax(logits_clean.detach() / recipe.temperature, 1).double()
    )
    torch.testing.assert_close(trainer.class_prior.state_dict()["sums"], expected_sums)
