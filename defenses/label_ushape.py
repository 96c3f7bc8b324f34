"""U-shape as a label defense: keep labels and loss at the client, so no returned gradient carries them."""

from __future__ import annotations

from typing import ClassVar

from secsplit.defenses.base import DEFENSES, Defense
from secsplit.errors import ConfigError


@DEFENSES.register("ushape")
class UShapeLabels(Defense):
    """Train with the U-shape topology (client keeps the tail, the labels and the loss); an audit entry.

    It changes nothing at run time: the protection is the topology itself. ``topology = "ushape"``
    tells audit drivers to build the configuration with ``build_topology("ushape", ...)``;
    ``on_setup`` refuses a topology where the label owner is not the data owner.
    """

    name = "ushape"
    #: the topology this defense stands for: build the configuration with it
    topology: ClassVar[str | None] = "ushape"
    addresses = "label leakage to the server: labels sent in clear, and label inference from returned gradients"
    threat_model = ("honest-but-curious server; the server still sees the tail-cut gradients the client returns, "
                    "so pair with a gradient defense (marvell, max-norm) against label inference from those")

    def __init__(self) -> None:
        self.checked = False

    def on_setup(self, trainer) -> None:
        topology = trainer.topology
        if topology.label_owner != topology.data_owner:
            raise ConfigError("the ushape defense keeps labels at the client: build the topology with topology='ushape' "
                              f"(got {topology.name!r}, where {topology.label_owner!r} "
                              f"holds the labels and {topology.data_owner!r} the data)")
        self.checked = True

    def params(self):
        return {"topology": self.topology}
