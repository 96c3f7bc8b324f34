"""Returned-gradient label defenses: noise statistics, exact sparsity, max-norm alignment, who they act for."""

import math

import pytest
import torch
from scipy import stats

from secsplit.callbacks import Callback
from secsplit.data import load_dataset
from secsplit.defenses import create_defense, defense_from_spec
from secsplit.defenses.label_gradient import keep_count, per_sample_norms
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer

GRADIENT_DEFENSES = [("gradient-noise", {"scale": 0.5}), ("gradient-sparsification", {"keep": 0.25}),
                     ("max-norm", {}), ("max-norm-isotropic", {}), ("marvell", {"scale": 2.0})]


def _rows_with_norms(norms, d, seed=0):
    g = torch.randn(len(norms), d, generator=torch.Generator().manual_seed(seed))
    return g / g.norm(dim=1, keepdim=True) * torch.tensor(norms, dtype=torch.float32)[:, None]


# -- gradient-noise ----------------------------------------------------------------------------------
def test_absolute_gradient_noise_is_gaussian_with_the_given_std():
    defense = create_defense("gradient-noise", scale=1.3, relative=False, seed=2)
    noise = defense.perturb(torch.zeros(200, 100)).flatten().numpy()
    assert stats.kstest(noise, stats.norm(scale=1.3).cdf).pvalue > 1e-3
    assert abs(noise.std() - 1.3) < 0.02


def test_relative_gradient_noise_scales_with_the_mean_per_sample_norm():
    defense = create_defense("gradient-noise", scale=0.4, seed=0)
    grad = _rows_with_norms([1.0, 2.0, 3.0, 6.0] * 100, 50)  # mean per-sample norm 3.0
    noise = (defense.perturb(grad) - grad).flatten()
    assert defense.last_std == pytest.approx(0.4 * 3.0, rel=1e-5)
    assert float(noise.std()) == pytest.approx(1.2, rel=0.02)
    # a batch twice as large under a mean-reduced loss has gradients half as large: same relative noise
    noise_small = (defense.perturb(grad / 2) - grad / 2).flatten()
    assert float(noise_small.std()) == pytest.approx(0.6, rel=0.02)


def test_gradient_noise_is_seeded_and_fresh_each_step():
    a, b = create_defense("gradient-noise", scale=1.0, seed=5), create_defense("gradient-noise", scale=1.0, seed=5)
    g = torch.ones(4, 6)
    first = a.perturb(g)
    assert torch.equal(first, b.perturb(g))
    assert not torch.equal(first, a.perturb(g))
    assert torch.equal(g, torch.ones(4, 6))  # input untouched


# -- gradient-sparsification --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["topk", "random"])
@pytest.mark.parametrize("keep,d", [(0.3, 100), (0.25, 10), (0.01, 37), (1.0, 12)])
def test_sparsification_keeps_an_exact_fraction_per_sample(method, keep, d):
    grad = torch.randn(16, d) + 0.01 * torch.sign(torch.randn(16, d))  # no exact zeros
    out = create_defense("gradient-sparsification", keep=keep, method=method).perturb(grad)
    k = keep_count(keep, d)
    assert k == min(d, max(1, math.ceil(keep * d - 1e-9)))
    assert torch.equal((out != 0).sum(dim=1), torch.full((16,), k))
    kept = out != 0
    assert torch.equal(out[kept], grad[kept])  # kept entries are unchanged, not rescaled


def test_topk_keeps_the_largest_magnitudes():
    grad = torch.randn(8, 3, 5)  # any shape: per sample over all its entries
    out = create_defense("gradient-sparsification", keep=0.2, method="topk").perturb(grad)
    flat, kept = grad.reshape(8, -1).abs(), out.reshape(8, -1) != 0
    for i in range(8):
        assert flat[i][kept[i]].min() >= flat[i][~kept[i]].max()
    assert out.shape == grad.shape


def test_random_sparsification_is_uniform_and_seeded():
    grad = torch.ones(4000, 20)
    defense = create_defense("gradient-sparsification", keep=0.25, method="random", seed=3)
    out = defense.perturb(grad)
    freq = (out != 0).float().mean(0)  # each coordinate kept with probability 5/20
    assert torch.allclose(freq, torch.full((20,), 0.25), atol=0.03)
    again = create_defense("gradient-sparsification", keep=0.25, method="random", seed=3).perturb(grad)
    assert torch.equal(out, again)
    assert not torch.equal(out[0] != 0, out[1] != 0) or not torch.equal(out[1] != 0, out[2] != 0)


# -- max-norm -----------------------------------------------------------------------------------------
def test_max_norm_scales_each_gradient_along_itself_to_the_max_expected_norm():
    """Li et al.'s max-norm: g_i (1 + sigma_i xi_i), sigma_i^2 = max ||g||^2 / ||g_i||^2 - 1."""
    norms = [0.5, 1.0, 2.0, 4.0]
    base = _rows_with_norms(norms, 32)
    grad = base.repeat(4000, 1)  # many draws of each sample in one batch (the batch max stays 4.0)
    out = create_defense("max-norm", seed=1).perturb(grad)
    sq = out.pow(2).sum(1).reshape(4000, 4).double().mean(0)
    assert torch.allclose(sq, torch.full((4,), 16.0, dtype=torch.float64), rtol=0.05)
    # the perturbation lies along the gradient: every output is a scalar multiple of its input
    factor = (out * grad).sum(1) / grad.pow(2).sum(1)
    assert torch.allclose(out, factor[:, None] * grad, atol=1e-5)
    expected_std = torch.tensor([(16.0 / n ** 2 - 1) ** 0.5 for n in norms])
    assert torch.allclose(factor.reshape(4000, 4).std(0), expected_std, rtol=0.05)
    assert torch.equal(out[3], grad[3])  # the max-norm sample is sent as is
    flipped = (factor.reshape(4000, 4) < 0).float().mean(0)  # small gradients often flip sign
    assert flipped[0] > 0.4 and flipped[3] == 0
    assert torch.equal(create_defense("max-norm").perturb(torch.zeros(3, 5)), torch.zeros(3, 5))


def test_isotropic_max_norm_pads_with_isotropic_noise_to_the_max_expected_norm():
    norms = [0.5, 1.0, 2.0, 4.0]
    base = _rows_with_norms(norms, 32)
    grad = base.repeat(3000, 1)
    out = create_defense("max-norm-isotropic", seed=1).perturb(grad)
    sq = out.pow(2).sum(1).reshape(3000, 4).double().mean(0)
    assert torch.allclose(sq, torch.full((4,), 16.0, dtype=torch.float64), rtol=0.02)
    noise = (out - grad).reshape(3000, 4, 32)
    var = noise.pow(2).mean(dim=(0, 2))  # per-coordinate variance, isotropic
    expected = torch.tensor([(16.0 - n * n) / 32 for n in norms])
    assert torch.allclose(var, expected, rtol=0.03, atol=1e-6)
    assert torch.equal(out[3], grad[3])  # the max-norm sample gets no noise
    before = per_sample_norms(grad[:4])
    assert before.max() / before.min() == pytest.approx(8.0)


@pytest.mark.parametrize("name,slack", [("max-norm", 0.15), ("max-norm-isotropic", 0.06)])
def test_max_norm_removes_the_norm_signal_from_a_synthetic_batch(name, slack):
    """Both equalize the expected squared norm; Li et al.'s scaling leaves the norms' *distributions*
    apart (|1 + sigma xi| is spread wide for small gradients): AUC 0.59 here, isotropic 0.5."""
    from sklearn.metrics import roc_auc_score

    gen = torch.Generator().manual_seed(0)
    labels = (torch.rand(2000, generator=gen) < 0.1).long()
    grad = torch.randn(2000, 64, generator=gen) * (0.02 + 0.1 * labels[:, None])  # positives: larger norms
    before = roc_auc_score(labels, per_sample_norms(grad))
    after = roc_auc_score(labels, per_sample_norms(create_defense(name).perturb(grad)))
    assert before > 0.99 and abs(after - 0.5) < slack


# -- who they act for, labels untouched ---------------------------------------------------------------
class _Spy(Callback):
    def __init__(self):
        self.grads, self.labels = [], []

    def transform_gradient(self, grad, *, party, step):
        self.grads.append((party, grad.clone()))
        return grad

    def transform_labels(self, y, *, party, step):
        self.labels.append((party, y.clone()))
        return y


@pytest.mark.parametrize("name,kwargs", GRADIENT_DEFENSES)
@pytest.mark.parametrize("topology,cuts,label_source", [("vanilla", ["relu1"], "label_owner"), ("ushape", ["relu1", "relu2"], "data_owner"),
                                                        ("multihop", ["relu1", "relu2"], "data_owner")])
def test_only_the_label_owners_returned_gradient_changes_and_labels_stay(name, kwargs, topology, cuts, label_source):
    data = load_dataset("synthetic", seed=0, n_samples=256, num_classes=2, n_features=10)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=2, seed=0, hidden=(16, 8))
    topo = build_topology(topology, model, cuts=cuts, label_source=label_source)
    before, after = _Spy(), _Spy()
    Trainer(topo, batch_size=64, callbacks=[before, create_defense(name, **kwargs), after])
    x, y = data.x_train[:64], data.y_train[:64].clone()
    y_copy = y.clone()
    topo.train_step(x, y, step=0)
    assert torch.equal(y, y_copy)
    assert [p for p, _ in before.grads] == [p for p, _ in after.grads] == list(reversed(topo.owners[1:]))
    for (party, g_in), (_, g_out) in zip(before.grads, after.grads):
        if party == topo.label_owner:
            assert not torch.equal(g_in, g_out), party
        else:
            assert torch.equal(g_in, g_out), party
    assert all(torch.equal(a, y) and torch.equal(b, y) for (_, a), (_, b) in zip(before.labels, after.labels))


@pytest.mark.parametrize("name,kwargs", GRADIENT_DEFENSES)
def test_gradient_defenses_refuse_to_run_unattached(name, kwargs):
    with pytest.raises(ConfigError, match="must be attached through a Trainer"):
        create_defense(name, **kwargs).transform_gradient(torch.zeros(2, 3), party="server", step=0)


@pytest.mark.parametrize("kwargs,message", [
    ({"scale": -1.0}, r"scale must be in \[0.0, inf\)"),
    ({"scale": "big"}, "scale must be a (finite )?number"),  # the registry checks types first
])
def test_gradient_noise_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_defense("gradient-noise", **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"keep": 0.0}, r"keep must be in \(0.0, 1.0\]"),
    ({"keep": 1.5}, r"keep must be in \(0.0, 1.0\]"),
    ({"method": "bottomk"}, "unknown sparsification method 'bottomk'; valid: topk, random"),
])
def test_sparsification_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_defense("gradient-sparsification", **kwargs)


def test_specs_and_reports():
    d = defense_from_spec("gradient-sparsification:frac=0.5,method=random")
    assert d.params() == {"keep": 0.5, "method": "random", "seed": 0}
    assert defense_from_spec("gradient-noise:scale=0.1,relative=false").params()["relative"] is False
    for name, kwargs in GRADIENT_DEFENSES:
        r = create_defense(name, **kwargs).report()
        assert r["defense"] == name and r["epsilon"] is None and r["steps"] == 0
