"""Hijack detection: no alarm under honest training, alarm and a clean stop under a label-blind server."""

import pytest
import torch

from secsplit.data import load_dataset
from secsplit.defenses import create_defense
from secsplit.defenses.hijack import label_consistency_gap
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer
from hijacking import LabelBlindServer, cut_width, record_releases


def _run(dataset, model_name, *, hijack, seed, topology="vanilla"):
    data = load_dataset(dataset, seed=seed)
    model = create_model(model_name, input_shape=data.input_shape, num_classes=data.num_classes, seed=seed)
    topo = build_topology(topology, model)
    detector = create_defense("hijack-detection")
    callbacks = [detector]
    if hijack:
        callbacks.append(LabelBlindServer(cut_width(model, topo.cuts[0]), seed))
    sent = record_releases(topo)
    report = Trainer(topo, epochs=2, batch_size=32, seed=seed, callbacks=callbacks).fit(data)
    return detector, report, sent


def test_gap_is_positive_for_label_shaped_gradients_and_none_without_pairs():
    labels = torch.tensor([0, 0, 1, 1])
    honest = torch.tensor([[1.0, 0.1], [0.9, -0.1], [-1.0, 0.2], [-0.8, 0.0]])
    assert label_consistency_gap(honest, labels) > 1.0
    assert label_consistency_gap(honest, torch.tensor([0, 1, 2, 3])) is None


@pytest.mark.parametrize("dataset,model", [("digits", "mlp"), ("breast-cancer", "mlp")])
def test_honest_training_raises_no_alarm(dataset, model):
    for seed in range(2):
        detector, report, _ = _run(dataset, model, hijack=False, seed=seed)
        assert detector.detected_at is None and report.summary["stopped"] is None
        assert min(detector.gaps) > 0.15


@pytest.mark.parametrize("topology", ["vanilla", "ushape"])
def test_label_blind_server_is_detected_and_client_stops_sending(topology):
    detector, report, sent = _run("digits", "mlp", hijack=True, seed=0, topology=topology)
    assert detector.detected_at is not None and detector.detected_at <= 10
    assert "hijack-detection" in report.summary["stopped"]
    assert max(sent) <= detector.detected_at + 1  # nothing released after the alarm
    assert detector.report()["detected"] is True


def test_needs_labels_at_the_client():
    data = load_dataset("digits")
    model = create_model("mlp", input_shape=data.input_shape, num_classes=10, seed=0)
    topo = build_topology("vanilla", model, label_source="label_owner")
    with pytest.raises(ConfigError, match="needs labels at the client"):
        Trainer(topo, callbacks=[create_defense("hijack-detection")])


def _run_fsha(*, defend, seed=0, epochs=3):
    """The real feature-space hijacking attack (fsha) against LeNet on digits, cut relu1, with or without the detector."""
    from secsplit.attacks import create_attack

    data = load_dataset("digits", seed=seed)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=data.num_classes, seed=seed)
    topo = build_topology("vanilla", model, cuts=["relu1"])
    detector = create_defense("hijack-detection")
    attack = create_attack("fsha", targets=data.x_test[-16:], aux_size=500)
    attack.check_applicable(topo, data)
    sent = record_releases(topo)
    callbacks = [detector, attack] if defend else [attack]
    report = Trainer(topo, epochs=epochs, batch_size=64, seed=seed, callbacks=callbacks).fit(data)
    return detector, attack, report, sent


def test_real_fsha_is_detected_within_ten_steps_and_the_client_stops_releasing():
    detector, attack, report, sent = _run_fsha(defend=True)
    # measured: detected at step 4 (the first decision, warmup 5), median gap ~0 against > 0.15 honest
    assert detector.detected_at is not None and detector.detected_at <= 10
    assert "hijack-detection" in report.summary["stopped"]
    assert max(sent) <= detector.detected_at + 1
    assert len(attack.history) <= detector.detected_at + 1  # the server hijacked only the steps before the alarm
    # the client refuses split inference after the alarm: the attack falls back to the last batch it received,
    # whose inputs it does not know, so there is nothing to score it against
    result = attack.result()
    assert result.originals is None and "hijack-detection" in result.info["client_stopped"]


def test_honest_lenet_on_digits_raises_no_alarm():
    data = load_dataset("digits", seed=0)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=data.num_classes, seed=0)
    topo = build_topology("vanilla", model, cuts=["relu1"])
    detector = create_defense("hijack-detection")
    report = Trainer(topo, epochs=3, batch_size=64, seed=0, callbacks=[detector]).fit(data)
    assert detector.detected_at is None and report.summary["stopped"] is None
    assert min(detector.gaps) > 0.15
