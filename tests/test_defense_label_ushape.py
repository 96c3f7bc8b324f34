"""The ushape audit entry: names its topology, refuses configurations where the server holds labels."""

import pytest

from secsplit.data import load_dataset
from secsplit.defenses import DEFENSES, create_defense, defense_from_spec
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Trainer


def _model(data):
    return create_model("mlp", input_shape=data.input_shape, num_classes=3, seed=0, hidden=(16, 8))


def test_ushape_defense_names_its_topology_and_describes_itself():
    cls = DEFENSES.lookup("ushape")
    assert cls.topology == "ushape" and cls.addresses and cls.threat_model
    assert defense_from_spec("ushape").report() == {"defense": "ushape", "params": {"topology": "ushape"}, "epsilon": None}


@pytest.mark.parametrize("topology,kwargs", [("vanilla", {}), ("vanilla", {"label_source": "label_owner"}), ("multihop", {})])
def test_ushape_defense_refuses_topologies_where_labels_leave_the_client(topology, kwargs):
    data = load_dataset("synthetic", seed=0, n_samples=128, num_classes=3, n_features=10)
    topo = build_topology(topology, _model(data), **kwargs)
    with pytest.raises(ConfigError, match="the ushape defense keeps labels at the client: build the topology with topology='ushape'"):
        Trainer(topo, callbacks=[create_defense("ushape")])


@pytest.mark.parametrize("topology", ["ushape", "multihop-ushape"])
def test_ushape_defense_accepts_and_trains_a_ushape_configuration(topology):
    data = load_dataset("synthetic", seed=0, n_samples=256, num_classes=3, n_features=10)
    defense = create_defense(DEFENSES.lookup("ushape").name)
    topo = build_topology(defense.topology if topology == "ushape" else topology, _model(data))
    report = Trainer(topo, batch_size=64, epochs=2, callbacks=[defense]).fit(data)
    assert defense.checked
    assert report.summary["label_owner"] == report.summary["data_owner"] == "client"
    assert topo.channel.traffic.total(kind="labels", what="messages") == 0  # labels never cross the channel
