"""The losses against their definitions: Theorem 1, the O(C) identity, IKL's gradients and the class prior."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ikl_zoo.errors import IklZooError
from ikl_zoo.losses import (
    KD_PRESETS,
    ClassPrior,
    KDConfig,
    dkl_loss,
    ikl_kd_loss,
    ikl_loss,
    kd_preset,
    kl_loss,
    weighted_logit_mse,
)


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


def _authors_ikl_kd(teacher, student, y, *, alpha, beta, temperature, t2, warmup, epoch, prior=None,
                    ce_weight=1.0):
    """The authors' distiller written out: ``IKL_KD.forward_train`` around their ``dkl_loss`` (pairwise,
    weights ``softmax(teacher / T2)`` or, with GI, the prior row of each label; wMSE over the batch size)."""
    classes = teacher.shape[1]
    weights = prior[y] if prior is not None else F.softmax(teacher / t2, dim=1)
    outer = weights.view(-1, classes, 1) @ weights.view(-1, 1, classes)
    delta_t = teacher.view(-1, classes, 1) - teacher.view(-1, 1, classes)
    delta_s = student.view(-1, classes, 1) - student.view(-1, 1, classes)
    wmse = 0.25 * ((delta_t - delta_s).pow(2) * outer).sum() / student.shape[0]
    soft = -(F.softmax(teacher / temperature, -1) * F.log_softmax(student / temperature, -1)).sum(1).mean()
    return ce_weight * F.cross_entropy(student, y) + min(epoch / warmup, 1.0) * (beta * wmse + alpha * soft)


def _authors_prior(teacher, y, t2):
    """Their trainer's prior: per-class sums of ``softmax(teacher / T2)`` over an epoch, rows normalised."""
    sums = F.one_hot(y, teacher.shape[1]).to(teacher.dtype).t() @ F.softmax(teacher / t2, dim=-1)
    return sums / sums.sum(1, keepdim=True)


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
    common = dict(alpha=3.0, beta=1.5, temperature=4.0, weight_temperature=2.0, ce_weight=0.5)

    def reference(prior, warmup, epoch):
        return _authors_ikl_kd(teacher, student, y, alpha=3.0, beta=1.5, temperature=4.0, t2=2.0,
                               warmup=warmup, epoch=epoch, prior=prior, ce_weight=0.5)

    no_gi = ikl_kd_loss(teacher, student, y, epoch=2, config=KDConfig(warmup_epochs=8, **common))
    torch.testing.assert_close(no_gi, reference(None, 8, 2))
    prior = _random_prior(10, seed=12)
    with_gi = ikl_kd_loss(teacher, student, y, class_prior=prior, config=KDConfig(**common))
    torch.testing.assert_close(with_gi, reference(prior, 1, 1))
    with pytest.raises(ValueError, match="epoch="):
        ikl_kd_loss(teacher, student, y, config=KDConfig(warmup_epochs=5))


def test_the_default_weight_temperature_is_the_authors_t2():
    """Their ``dkl_loss`` defaults to ``T2 = 100``: at defaults the loss is theirs, not the one at T2 = 1."""
    teacher, student = _logits(batch=16, classes=100, seed=13)
    y = torch.arange(16) * 3 % 100
    ours = ikl_kd_loss(teacher.detach(), student, y)
    authors = _authors_ikl_kd(teacher.detach(), student, y, alpha=1.0, beta=1.0, temperature=1.0, t2=100.0,
                              warmup=1, epoch=1)
    torch.testing.assert_close(ours, authors, rtol=1e-12, atol=1e-12)
    at_t2_1 = ikl_kd_loss(teacher.detach(), student, y, config=KDConfig(weight_temperature=1.0))
    assert abs(at_t2_1 / authors - 1) > 0.01


# Three of the authors' configurations as their yaml files (and the defaults in cfg.py) give them:
# file under DKLv1/KD-dkl/configs/, alpha, beta, T, WARMUP, GI, T2.
_AUTHORS_FILES = {
    "cifar100-wrn40_2-wrn40_1": ("cifar100/ikl_kd/wrn40_2_wrn_40_1.yaml", 1.0, 8.0, 4.0, 20, False, 100.0),
    "imagenet-res34-res18": ("imagenet/r34_r18/ikl_kd.yaml", 1.0, 0.5, 1.0, 1, True, 1.0),
    "imagenet-res50-mobilenetv1": ("imagenet/r50_mv1/ikl_kd.yaml", 4.0, 1.0, 1.0, 1, True, 1.0),
}


@pytest.mark.parametrize("name", _AUTHORS_FILES)
def test_kd_presets_carry_the_values_of_the_authors_files(name):
    path, alpha, beta, temperature, warmup, gi, t2 = _AUTHORS_FILES[name]
    config = kd_preset(name)
    assert config.source == f"github.com/jiequancui/DKL, DKLv1/KD-dkl/configs/{path}"
    assert (config.alpha, config.beta, config.temperature) == (alpha, beta, temperature)
    assert config.uses_class_prior == gi
    assert (config.weight_temperature, config.ce_weight) == (t2, 1.0)
    assert config.warmup_epochs == (warmup if warmup > 1 else 0)  # a 1-epoch warm-up from epoch 1 is none


@pytest.mark.parametrize("name", KD_PRESETS)
@pytest.mark.parametrize("epoch", [5, 30])
def test_every_kd_preset_reproduces_the_authors_loss(name, epoch):
    config = kd_preset(name)
    assert re.fullmatch(r"github\.com/jiequancui/DKL, DKLv1/KD-dkl/configs/[\w/]+\.yaml", config.source)
    classes = 1000 if name.startswith("imagenet") else 100
    teacher, student = _logits(batch=8, classes=classes, seed=14)
    teacher = teacher.detach()
    y = torch.tensor([0, 3, 3, 7, 11, 42, 99, 5])
    prior = None
    if config.uses_class_prior:  # an epoch of teacher logits seeing every class, then this batch
        epoch_logits = 3.0 * torch.randn(2 * classes, classes, generator=torch.Generator().manual_seed(15),
                                         dtype=torch.float64)
        epoch_labels = torch.arange(2 * classes) % classes
        class_prior = ClassPrior(classes, temperature=config.weight_temperature)
        class_prior.update(epoch_logits, epoch_labels)
        prior = class_prior.step()
        authors_prior = _authors_prior(epoch_logits, epoch_labels, config.weight_temperature)
        torch.testing.assert_close(prior, authors_prior)
        with pytest.raises(ValueError, match="uses the class prior: pass class_prior="):
            ikl_kd_loss(teacher, student, y, config=config, epoch=epoch)
    ours = ikl_kd_loss(teacher, student, y, config=config, class_prior=prior, epoch=epoch)
    authors = _authors_ikl_kd(
        teacher, student, y, alpha=config.alpha, beta=config.beta, temperature=config.temperature,
        t2=config.weight_temperature, warmup=config.warmup_epochs or 1, epoch=epoch, prior=prior,
    )
    torch.testing.assert_close(ours, authors, rtol=1e-12, atol=1e-12)


def test_an_unknown_kd_preset_names_the_known_ones():
    with pytest.raises(IklZooError) as error:
        kd_preset("cifar100-wrn40_2-wrn40-1")
    assert error.value.problem == "unknown KD preset 'cifar100-wrn40_2-wrn40-1'"
    assert "cifar100-wrn40_2-wrn40_1" in error.value.fix and "imagenet-res50-mobilenetv1" in error.value.fix
    assert "\n" not in str(error.value)


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
