"""SplitOut: a label-blind (hijacking) server is detected early and the client stops sending."""

from secsplit.data import load_dataset
from secsplit.defenses import create_defense
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer
from hijacking import LabelBlindServer, cut_width, record_releases


def test_label_blind_server_is_detected_and_client_stops():
    data = load_dataset("digits", seed=0)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=0)
    topo = build_topology("vanilla", model)
    # a 10-epoch simulation: this weak critic's gradients are small, and a longer simulation (the default 40)
    # reaches gradients as small late in honest training, so it misses this server (FSHA's it still catches)
    detector = create_defense("splitout", sim_epochs=10)
    sent = record_releases(topo)
    report = Trainer(topo, epochs=1, batch_size=32,
                     callbacks=[detector, LabelBlindServer(cut_width(model, topo.cuts[0]))]).fit(data)
    assert detector.detected_at is not None and detector.detected_at <= 15
    assert "splitout" in report.summary["stopped"]
    assert max(sent) <= detector.detected_at + 1
    assert detector.report()["honest_examples"] == 40


def _honest(epochs, **options):
    data = load_dataset("digits", seed=0)
    model = create_model("lenet", input_shape=data.input_shape, num_classes=10, seed=0)
    topo = build_topology("vanilla", model)
    detector = create_defense("splitout", **options)
    Trainer(topo, epochs=epochs, batch_size=32, callbacks=[detector]).fit(data)
    return detector


def test_honest_training_raises_no_alarm_in_its_second_epoch():
    # a 10-epoch simulation (40 honest gradients) ends before real training's gradients shrink: alarm in epoch 2
    short = _honest(2, sim_epochs=10)
    assert short.detected_at is not None and short.detected_at >= 45
    detector = _honest(2)  # the default 40-epoch simulation covers them
    assert detector.detected_at is None and detector.armed_at == 3
