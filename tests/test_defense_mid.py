"""MID: the KL term reaches the layer, the layer is the client's (white-box attackers get it), and it works."""

import pytest
import torch

from secsplit.data import load_dataset
from secsplit.defenses import create_defense
from secsplit.defenses.layers import AddLoss
from secsplit.defenses.mid import VariationalBottleneck
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.stats import distance_correlation
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def test_add_loss_gives_the_regularizer_its_weight_as_gradient():
    out = torch.randn(3, 2, requires_grad=True)
    reg = torch.tensor(2.0, requires_grad=True)
    AddLoss.apply(out, reg, 0.25).sum().backward()
    assert float(reg.grad) == pytest.approx(0.25)
    assert torch.equal(out.grad, torch.ones(3, 2))


def test_bottleneck_kl_matches_the_closed_form_and_eval_uses_the_mean():
    layer = VariationalBottleneck((6,), bottleneck=3, hidden=8, lam=1.0, sample_at_eval=False, seed=0)
    h = torch.randn(5, 6)
    layer(h).sum().backward()
    stats = layer.encoder(h)
    mu, std = stats[:, :3], torch.nn.functional.softplus(stats[:, 3:] - 5)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mu, std),
                                                 torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    assert layer.last_kl == pytest.approx(float(expected), rel=1e-4)
    layer.eval()
    assert torch.equal(layer(h), layer(h))  # z = mu at inference unless sample_at_eval


def _run(spec, *, label_source="data_owner", data="digits", epochs=4):
    data = load_dataset(data, seed=0)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, seed=0, hidden=(32, 32))
    topo = build_topology("vanilla", model, cuts=["relu2"], label_source=label_source)
    callbacks = [create_defense("mid", **spec)] if spec is not None else []
    report = Trainer(topo, epochs=epochs, batch_size=32, callbacks=callbacks).fit(data)
    return topo, data, report, callbacks


def test_input_side_layer_ends_the_client_segment_and_is_trained_by_the_client():
    topo, _, _, (mid,) = _run({"lam": 0.0}, epochs=1)
    assert list(topo.segments[0]._modules)[-1] == "mid"
    client_params = {id(p) for g in topo.parties["client"].optimizer.param_groups for p in g["params"]}
    assert all(id(p) in client_params for p in mid.layer.parameters())


def test_strong_input_side_mid_lowers_the_dcor_of_what_the_client_releases():
    def released_dcor(spec):
        topo, data, report, _ = _run(spec)
        topo.eval()
        with torch.no_grad():
            return float(distance_correlation(data.x_test[:256], topo.segments[0](data.x_test[:256]))), report
    plain, _ = released_dcor({"lam": 0.0})
    strong, _ = released_dcor({"lam": 1.0})
    assert strong < plain - 0.2, (plain, strong)


def test_label_side_mid_lowers_the_norm_attack():
    from secsplit.attacks import create_attack

    def auc(spec):
        data = load_dataset("breast-cancer-imbalanced", seed=0)
        model = create_model("mlp", input_shape=data.input_shape, num_classes=2, seed=0)
        topo = build_topology("vanilla", model, label_source="label_owner")
        attack = create_attack("norm-attack", dataset=data)
        defenses = [create_defense("mid", **spec)] if spec else []
        Trainer(topo, epochs=3, batch_size=32, callbacks=[*defenses, attack]).fit(data)
        return attack.result().scores()["leak_auc"]
    plain, defended = auc(None), auc({"lam": 0.1, "side": "labels"})
    assert defended < plain - 0.1, (plain, defended)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="side"):
        create_defense("mid", side="middle")
    with pytest.raises(ConfigError, match="lam"):
        create_defense("mid", lam=-1)
