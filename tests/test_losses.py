"""The losses against their definitions: Theorem 1, the O(C) identity, IKL's gradients and the class prior."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ikl_zoo.losses import ClassPrior, KDConfig, dkl_loss, ikl_kd_loss, ikl_loss, kl_loss, weighted_logit_mse


def _logits(batch: int = 16, classes: int = 10, *, seed: int = 0, scale: float = 3.0):
    generator = torch.Generator().manual_seed(seed)
    z_m = (scale * torch.randn(batch, classes, generator=generator, dtype=torch.float64)).requires_grad_()
    z_n = (scale * torch.randn(batch, classes, generator=generator, dtype=torch.float64)).requires_grad_()
    return z_m, z_n


def _grads(loss_fn, z_m, z_n):
    return torch.autograd.grad(loss_fn(z_m, z_n), [z_m, z_n])


def _released_ikl(z_m, z_n, y, prior, alpha, beta, prior_power=1.0):
    """The wMSE and CE of the paper's released adversarial-training code, written out pairwise."""
    classes = z_m.shape[1]
    weights = prior[y].pow(prior_power)
    outer = weights.view(-1, classes, 1) @ weights.view(-1, 1, classes)
    delta_m = z_m.view(-1, classes, 1) - z_m.view(-1, 1, classes)
    delta_n = z_n.view(-1, classes, 1) - z_n.view(-1, 1, classes)
    wmse = 0.25 * ((delta_m - delta_n).pow(2) * outer).sum() / outer.sum()
    ce = -(F.softmax(z_m, dim=1).detach() * F.log_softmax(z_n, dim=1)).sum(1).mean()
    return beta * wmse + alpha * ce


def _random_prior(classes: int, *, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.softmax(2 * torch.randn(classes, classes, generator=generator, dtype=torch.float64), dim=1)


def test_theorem_1_dkl_gradients_equal_kl_gradients_in_float64():
    z_m, z_n = _logits()
    grad_kl = _grads(kl_loss, z_m, z_n)
    grad_dkl = _grads(dkl_loss, z_m, z_n)
    for g_kl, g_dkl in zip(grad_kl, grad_dkl, strict=True):
        assert g_kl.abs().max() > 1e-3  # a real gradient, not two zeros
        torch.testing.assert_close(g_dkl, g_kl, rtol=0, atol=1e-12)


def test_dkl_decouples_wmse_to_z_m_and_ce_to_z_n():
    z_m, z_n = _logits(seed=3)
    grad_kl_m, grad_kl_n = _grads(kl_loss, z_m, z_n)
    grad_m, grad_n = _grads(lambda a, b: dkl_loss(a, b, alpha=2.0, beta=5.0), z_m, z_n)
    torch.testing.assert_close(grad_m, 5.0 * grad_kl_m, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_n, 2.0 * grad_kl_n, rtol=0, atol=1e-12)


def test_kl_loss_matches_torch_kl_div():
    z_m, z_n = _logits(seed=4)
    expected = F.kl_div(F.log_softmax(z_n, 1), F.log_softmax(z_m, 1), reduction="batchmean", log_target=True)
    torch.testing.assert_close(kl_loss(z_m, z_n), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("normalised", [True, False])
def test_linear_wmse_equals_pairwise_form_values_and_gradients(normalised):
    z_m, z_n = _logits(batch=8, classes=37, seed=5)
    weights = torch.rand(8, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    if normalised:
        weights = weights / weights.sum(1, keepdim=True)
    linear = weighted_logit_mse(z_m, z_n, weights)
    pairwise = weighted_logit_mse(z_m, z_n, weights, pairwise=True)
    torch.testing.assert_close(linear, pairwise, rtol=1e-12, atol=1e-12)
    for g_lin, g_pair in zip(
        torch.autograd.grad(linear.sum(), [z_m, z_n]), torch.autograd.grad(pairwise.sum(), [z_m, z_n]),
        strict=True,
    ):
        torch.testing.assert_close(g_lin, g_pair, rtol=1e-10, atol=1e-12)


def test_linear_wmse_is_stable_in_float32_with_large_logits():
    z_m, z_n = _logits(batch=4, classes=100, seed=7)
    weights = F.softmax(torch.randn(4, 100, dtype=torch.float64), dim=1)
    offset = 1000.0  # logits far from zero: expanding sum(w d^2) - (sum w d)^2 would cancel catastrophically
    exact = weighted_logit_mse(z_m.detach() + offset, z_n.detach(), weights, pairwise=True)
    fast32 = weighted_logit_mse((z_m.detach() + offset).float(), z_n.detach().float(), weights.float())
    torch.testing.assert_close(fast32.double(), exact, rtol=1e-4, atol=1e-4)


def test_ikl_matches_the_released_pairwise_loss_and_trains_both_branches():
    z_m, z_n = _logits(batch=12, classes=10, seed=8)
    y = torch.arange(12) % 10
    prior = _random_prior(10)
    ours = ikl_loss(z_m, z_n, y, prior, alpha=3.0, beta=20.0)
    released = _released_ikl(z_m, z_n, y, prior, 3.0, 20.0)
    torch.testing.assert_close(ours, released, rtol=1e-12, atol=1e-12)
    grad_m, grad_n = torch.autograd.grad(ours, [z_m, z_n])
    ref_m, ref_n = torch.autograd.grad(_released_ikl(z_m, z_n, y, prior, 3.0, 20.0), [z_m, z_n])
    torch.testing.assert_close(grad_m, ref_m, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad_n, ref_n, rtol=1e-10, atol=1e-12)

    # The wMSE term alone: no stop-gradient, so both branches get equal and opposite gradients.
    wmse_m, wmse_n = torch.autograd.grad(ikl_loss(z_m, z_n, y, prior, alpha=0.0, beta=1.0), [z_m, z_n])
    assert wmse_m.abs().max() > 1e-3
    torch.testing.assert_close(wmse_n, -wmse_m, rtol=0, atol=1e-12)
    # DKL, by contrast, stops the wMSE gradient into z_n.
    _, dkl_n = torch.autograd.grad(dkl_loss(z_m, z_n, alpha=0.0, beta=1.0), [z_m, z_n])
    assert dkl_n.abs().max() == 0


def test_ikl_prior_power_follows_released_normalisation():
    z_m, z_n = _logits(batch=6, classes=10, seed=9)
    y = torch.tensor([0, 1, 1, 4, 9, 9])
    prior = _random_prior(10, seed=2)
    torch.testing.assert_close(
        ikl_loss(z_m, z_n, y, prior, alpha=1.0, beta=2.0, prior_power=0.4),
        _released_ikl(z_m, z_n, y, prior, 1.0, 2.0, prior_power=0.4),
        rtol=1e-12,
        atol=1e-12,
    )


def test_ikl_uses_the_prior_row_of_each_label():
    z_m, z_n = _logits(batch=2, classes=3, seed=10)
    prior = torch.eye(3, dtype=torch.float64) * 0.98 + 0.01
    y_a, y_b = torch.tensor([0, 0]), torch.tensor([2, 2])
    assert not torch.isclose(ikl_loss(z_m, z_n, y_a, prior), ikl_loss(z_m, z_n, y_b, prior))
    with pytest.raises(ValueError, match="class_prior must be"):
        ikl_loss(z_m, z_n, y_a, prior[:2])


def test_ikl_kd_loss_with_and_without_global_information():
    teacher, student = _logits(batch=8, classes=10, seed=11)
    teacher = teacher.detach()
    y = torch.arange(8) % 10
    temperature, weight_temperature = 4.0, 2.0

    def reference(weights, warmup):
        classes = 10
        outer = weights.view(-1, classes, 1) @ weights.view(-1, 1, classes)
        delta_t = teacher.view(-1, classes, 1) - teacher.view(-1, 1, classes)
        delta_s = student.view(-1, classes, 1) - student.view(-1, 1, classes)
        wmse = 0.25 * ((delta_t - delta_s).pow(2) * outer).sum() / 8
        soft = -(F.softmax(teacher / temperature, 1) * F.log_softmax(student / temperature, 1)).sum(1).mean()
        return 0.5 * F.cross_entropy(student, y) + warmup * (1.5 * wmse + 3.0 * soft)

    common = dict(alpha=3.0, beta=1.5, temperature=temperature, weight_temperature=weight_temperature,
                  ce_weight=0.5)
    no_gi = ikl_kd_loss(teacher, student, y, epoch=2, config=KDConfig(warmup_epochs=8, **common))
    torch.testing.assert_close(no_gi, reference(F.softmax(teacher / weight_temperature, 1), 0.25))
    prior = _random_prior(10, seed=12)
    with_gi = ikl_kd_loss(teacher, student, y, class_prior=prior, config=KDConfig(**common))
    torch.testing.assert_close(with_gi, reference(prior[y], 1.0))
    with pytest.raises(ValueError, match="epoch="):
        ikl_kd_loss(teacher, student, y, config=KDConfig(warmup_epochs=5))


def test_class_prior_accumulates_normalises_and_keeps_unseen_rows():
    prior = ClassPrior(4, temperature=2.0)
    torch.testing.assert_close(prior.prior, torch.full((4, 4), 0.25, dtype=torch.float64))
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 1.0], [4.0, 0.0, 2.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    prior.update(logits[:2], y[:2])
    prior.update(logits[2:], y[2:])  # accumulates over batches
    stepped = prior.step()
    probs = F.softmax(logits.double() / 2.0, dim=1)
    torch.testing.assert_close(stepped[0], (probs[0] + probs[2]) / 2)
    torch.testing.assert_close(stepped[1], probs[1])
    torch.testing.assert_close(stepped[2:], torch.full((2, 4), 0.25, dtype=torch.float64))  # unseen: kept
    torch.testing.assert_close(stepped.sum(1), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(prior.weights(torch.tensor([1, 0])), stepped[[1, 0]])

    # The next epoch starts from zero sums: only its own samples count.
    prior.update(torch.tensor([[0.0, 0.0, 0.0, 6.0]]), torch.tensor([1]))
    restored = ClassPrior(4)
    restored.load_state_dict(prior.state_dict())
    assert restored.temperature == 2.0
    second = prior.step()
    expected_row = F.softmax(torch.tensor([0.0, 0.0, 0.0, 3.0], dtype=torch.float64), 0)
    torch.testing.assert_close(second[1], expected_row)
    torch.testing.assert_close(second[0], stepped[0])
    torch.testing.assert_close(restored.step(), second)


_ALL_REDUCE_WORKER = """
import sys, torch
from ikl_zoo.losses import ClassPrior
rank = int(sys.argv[1])
address = "tcp://127.0.0.1:" + sys.argv[2]
torch.distributed.init_process_group("gloo", init_method=address, rank=rank, world_size=2)
prior = ClassPrior(3, temperature=1.0)
prior.update(torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0]]) * (rank + 1), torch.tensor([0, rank]))
prior.all_reduce()
torch.save(prior.step(), sys.argv[3])
torch.distributed.destroy_process_group()
"""


def test_class_prior_all_reduce_pools_every_process(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outputs = [tmp_path / f"prior{rank}.pt" for rank in range(2)]
    processes = [
        subprocess.Popen([sys.executable, "-c", _ALL_REDUCE_WORKER, str(rank), str(port), str(outputs[rank])])
        for rank in range(2)
    ]
    for process in processes:
        assert process.wait(timeout=180) == 0

    expected = ClassPrior(3, temperature=1.0)
    for rank in range(2):
        logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0]]) * (rank + 1)
        expected.update(logits, torch.tensor([0, rank]))
    pooled = expected.step()
    for output in outputs:
        torch.testing.assert_close(torch.load(output, weights_only=True), pooled)
