"""DP-SGD on the client segment: per-sample gradients vs torch.func, accounting, refusals, utility."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from secsplit.callbacks import Callback
from secsplit.data import load_dataset
from secsplit.defenses import create_defense
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer

pytestmark = pytest.mark.filterwarnings("ignore:.*(Secure RNG|Optimal order|secure_mode|Full backward hook).*")


def _setup(topology="vanilla", cuts=None, **dp):
    data = load_dataset("synthetic", seed=0, n_samples=256, num_classes=3, n_features=10)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=3, seed=0, hidden=(16, 8))
    topo = build_topology(topology, model, cuts=cuts)
    defense = create_defense("dpsgd", **(dp if "target_epsilon" in dp else {"noise_multiplier": 1.0} | dp))
    return data, model, topo, defense


@pytest.mark.parametrize("topology,cuts", [("vanilla", ["relu1"]), ("ushape", ["relu1", "relu2"])])
def test_per_sample_gradients_match_torch_func(topology, cuts):
    data, model, topo, defense = _setup(topology, cuts)
    before = copy.deepcopy(model)  # before Opacus hooks are attached
    trainer = Trainer(topo, batch_size=32, epochs=1, callbacks=[defense])
    defense.on_fit_start(num_samples=len(data.x_train), epochs=1, batch_size=32)
    x, y = data.x_train[:16], data.y_train[:16]
    topo.train_step(x, y, step=0)

    params = {k: v.detach() for k, v in before.named_parameters()}

    def sample_loss(p, xi, yi):
        return F.cross_entropy(functional_call(before, p, (xi[None],)), yi[None])

    expected = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    client = topo.parties["client"].segments
    checked = 0
    for name, p in model.named_parameters():
        if any(p is q for q in client.parameters()):
            assert torch.allclose(p.grad_sample, expected[name], atol=1e-5), name
            checked += 1
    owned = {"vanilla": 2, "ushape": 4}[topology]  # weight + bias of fc1 (and of the tail's fc3)
    assert checked == owned
    assert trainer.sampling == "poisson"


def test_ushape_head_and_tail_are_one_dp_module_and_one_optimizer():
    _, _, topo, defense = _setup("ushape", ["relu1", "relu2"])
    Trainer(topo, batch_size=32, callbacks=[defense])
    client_params = {id(p) for p in topo.parties["client"].segments.parameters()}
    dp_params = {id(p) for group in defense._plain_optimizer.param_groups for p in group["params"]}
    assert dp_params == client_params and len(client_params) == 4


def test_epsilon_comes_from_prv_and_rdp_and_target_mode_reaches_target():
    data, _, topo, defense = _setup(target_epsilon=2.0, delta=1e-5)
    trainer = Trainer(topo, batch_size=32, epochs=3, callbacks=[defense])
    trainer.fit(data)
    report = defense.epsilon()
    steps = 3 * round(len(data.x_train) / 32)
    assert report["steps"] == steps
    assert report["sample_rate"] == pytest.approx(32 / len(data.x_train))
    assert report["prv"] == pytest.approx(2.0, abs=0.1)
    assert report["rdp"] >= report["prv"] - 0.05  # RDP's conversion is looser

    from opacus.accountants import RDPAccountant

    reference = RDPAccountant()
    for _ in range(steps):
        reference.step(noise_multiplier=report["noise_multiplier"], sample_rate=report["sample_rate"])
    assert report["rdp"] == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-9)


def test_dp_refuses_batch_level_losses():
    class BatchLoss(Callback):
        def extra_loss(self, x, z, *, party, step):
            return z.pow(2).mean()

    _, _, topo, defense = _setup()
    with pytest.raises(ConfigError, match="cannot be combined with a defense that adds a batch-level loss"):
        Trainer(topo, callbacks=[BatchLoss(), defense])


def test_bad_dp_parameters():
    with pytest.raises(ConfigError, match="exactly one of noise_multiplier= or target_epsilon="):
        create_defense("dpsgd")
    with pytest.raises(ConfigError, match="max_grad_norm must be > 0"):
        create_defense("dpsgd", noise_multiplier=1.0, max_grad_norm=0)
    with pytest.raises(ConfigError, match="unknown accountant 'gdp'"):
        create_defense("dpsgd", noise_multiplier=1.0, accountant="gdp")


def test_dp_training_still_learns_on_digits():
    data = load_dataset("digits", seed=0)
    model = create_model("mlp", input_shape=data.input_shape, num_classes=10, seed=0)
    topo = build_topology("vanilla", model)
    defense = create_defense("dpsgd", noise_multiplier=0.8, max_grad_norm=1.0)
    report = Trainer(topo, batch_size=64, epochs=8, callbacks=[defense]).fit(data)
    assert report.summary["test_accuracy"] > 0.8
    assert 0 < defense.epsilon()["prv"] < 20
