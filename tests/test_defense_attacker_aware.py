"""Attacker-aware training (ResSFL): the simulated attacker learns, the client fights it, the bottleneck is placed."""

import pytest
import torch

from secsplit.data import load_dataset
from secsplit.defenses import create_defense
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def _run(topology="vanilla", epochs=2, **spec):
    data = load_dataset("digits", seed=0)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=0)
    options = {"clients": 2} if topology == "splitfed" else {}
    topo = build_topology(topology, model, cuts=["relu1"], **options)
    defense = create_defense("attacker-aware", **spec)
    report = Trainer(topo, epochs=epochs, batch_size=32, callbacks=[defense]).fit(data)
    return topo, data, defense, report


def _fresh_decoder_mse(topo, data):
    """An independent inverse network (the defense's decoder shape, trained afresh) on the trained client."""
    from secsplit.defenses.attacker_aware import SimulatedDecoder

    torch.manual_seed(1)
    segment = topo.segments[0].eval()
    with torch.no_grad():
        z = segment(data.x_train[:600])
        z_test = segment(data.x_test[:200])
    decoder = SimulatedDecoder(tuple(z.shape[1:]), tuple(data.x_train.shape[1:]))
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    for _ in range(4):
        for idx in torch.randperm(600).split(32):
            opt.zero_grad()
            torch.nn.functional.mse_loss(decoder(z[idx]), data.x_train[:600][idx]).backward()
            opt.step()
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(decoder(z_test), data.x_test[:200]))


def test_maximizing_the_simulated_attackers_error_raises_a_fresh_attackers_error():
    plain_topo, data, plain, _ = _run(lam=0.0)
    armed_topo, _, armed, _ = _run(lam=5.0)
    assert armed.last_decoder_mse > 2 * plain.last_decoder_mse, (plain.last_decoder_mse, armed.last_decoder_mse)
    assert _fresh_decoder_mse(armed_topo, data) > 1.5 * _fresh_decoder_mse(plain_topo, data)


def test_bottleneck_ends_the_client_segment_and_starts_the_servers():
    topo, _, _, report = _run(epochs=1, lam=0.0, bottleneck=4)
    assert list(topo.segments[0]._modules)[-1] == "bottleneck"
    assert list(topo.segments[1]._modules)[0] == "bottleneck"
    with torch.no_grad():
        assert topo.segments[0](torch.zeros(2, 1, 8, 8)).shape[1] == 4


def test_runs_in_splitfed():
    _, _, defense, report = _run(topology="splitfed", epochs=1, lam=1.0)
    assert defense.steps > 0 and report.summary["test_accuracy"] is not None


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        create_defense("attacker-aware", lam=-1)
    with pytest.raises(ConfigError):
        create_defense("attacker-aware", decoder_steps=0)


def test_soft_ssim_matches_the_audits_ssim():
    from secsplit import metrics
    from secsplit.defenses.attacker_aware import soft_ssim

    torch.manual_seed(0)
    x = torch.rand(4, 1, 12, 12)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert float(soft_ssim(x, y)) == pytest.approx(metrics.ssim(x, y, data_range=1.0), abs=1e-5)


def test_ssim_hinge_holds_the_simulated_attacker_down_and_a_fresh_one_too():
    plain_topo, data, plain, _ = _run(epochs=1, lam=0.0, loss="ssim")
    armed_topo, _, armed, _ = _run(epochs=1, lam=5.0, loss="ssim", ssim_threshold=0.2)
    assert armed.last_decoder_ssim < plain.last_decoder_ssim - 0.1, (plain.last_decoder_ssim, armed.last_decoder_ssim)
    assert _fresh_decoder_mse(armed_topo, data) > 1.5 * _fresh_decoder_mse(plain_topo, data)


def test_ssim_loss_needs_images():
    with pytest.raises(ConfigError, match="loss"):
        create_defense("attacker-aware", loss="l1")


def test_pretraining_against_the_simulated_attacker_raises_a_fresh_attackers_error():
    # epochs=0: the client segment is what the pretraining made; control: the same pretraining with lam 0
    plain_topo, data, plain, _ = _run(epochs=0, lam=0.0, pretrain_epochs=3, pretrain_data="digits")
    armed_topo, _, armed, _ = _run(epochs=0, lam=5.0, pretrain_epochs=3, pretrain_data="digits")
    assert plain.pretrain_summary["train_accuracy"] > 0.5  # the simulated head learned the task with the client
    assert armed.last_decoder_mse > 2 * plain.last_decoder_mse, (plain.last_decoder_mse, armed.last_decoder_mse)
    assert _fresh_decoder_mse(armed_topo, data) > 1.5 * _fresh_decoder_mse(plain_topo, data)


def test_pretraining_changes_the_client_segment_and_split_training_starts_from_it():
    untouched, _, _, _ = _run(epochs=0, lam=1.0)
    pretrained, _, defense, _ = _run(epochs=0, lam=1.0, pretrain_epochs=1, pretrain_data="digits")
    before = torch.cat([p.flatten() for p in untouched.segments[0].parameters()])
    after = torch.cat([p.flatten() for p in pretrained.segments[0].parameters()])
    assert not torch.allclose(before, after)
    assert defense.report()["pretrain"]["samples"] == 1437


def test_client_lr_scale_scales_only_the_clients_optimizer():
    topo, _, _, _ = _run(epochs=0, lam=1.0, client_lr_scale=0.1)
    assert topo.parties[topo.data_owner].optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    server = next(p for name, p in topo.parties.items() if name != topo.data_owner)
    assert server.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_bad_pretraining_settings_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="pretrain_data"):
        create_defense("attacker-aware", pretrain_epochs=2)
    with pytest.raises(ConfigError, match="client_lr_scale"):
        create_defense("attacker-aware", client_lr_scale=0)
    with pytest.raises(ConfigError, match="shape"):
        _run(epochs=0, pretrain_epochs=1, pretrain_data="breast-cancer")
