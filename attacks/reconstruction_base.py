"""What every input-reconstruction attack shares: observing the client's cut activations from the
server's seat, choosing the target batch, the total-variation prior and small helpers.

Observation. The attack registers a tap for the attacking party (the server by default) in
``on_setup`` and keeps the activations the client sends it (kind "activation", from the data owner).
It applies only where the attacker receives the client's release directly, i.e. is the chain's
declared :attr:`~secsplit.topologies.Topology.first_receiver`: the server in vanilla and U-shape. In
multi-hop chains the first hop receives it: the server's seat is :class:`NotApplicable` there, and
``attacker="hop1"`` attacks from the first hop's seat.

Target batch. An attack is scored on one batch of client inputs whose activations the server saw:

- ``targets=`` given: when :meth:`ReconstructionAttack.result` runs, the client runs split inference
  (``topology.predict``) on ``targets`` as a deployed client would on new data; the server's tap
  records the activations it receives (phase "eval"), exactly what it would see in deployment.
- ``targets=None``: the target is the last batch of activations the server saw in phase
  ``phase`` (default "eval", e.g. the end-of-training evaluation), cut to ``max_targets`` rows.
  The originals are then unknown to the attack and ``AttackResult.originals`` is None.

Ground truth. ``targets`` doubles as the ground truth returned in ``AttackResult.originals``; it is
used *only* to drive the client's inference and for scoring. No attack reads it for its guesses
(the optimizations see the observed activations only; see each attack's threat model).
"""

from __future__ import annotations

import copy
import time
from typing import ClassVar

import torch
from torch import nn

from secsplit.attacks.base import Attack, AttackResult, NotApplicable
from secsplit.errors import ConfigError

TABULAR_REASON = "SSIM does not apply to tabular data: input reconstruction is scored on images"


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per sample (mean absolute difference of neighbouring pixels), shape (N,)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def relative_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error normalized by the target's mean square, shape (N,): scale-free across cuts."""
    err = (pred - target).flatten(1).pow(2).mean(1)
    return err / target.flatten(1).pow(2).mean(1).clamp_min(1e-8)


def reset_parameters(module: nn.Module, seed: int) -> nn.Module:
    """Re-draw every parameter of ``module`` with its layers' own initializers, seeded; returns it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in module.modules():
            if layer is not module and hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    return module


def frozen_copy(segment: nn.Module) -> nn.Module:
    """An eval-mode, gradient-free deep copy of ``segment`` (the attack never changes the client's own)."""
    clone = copy.deepcopy(segment).eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


class ReconstructionAttack(Attack):
    """Base of server-side input-reconstruction attacks (see the module docstring).

    Args:
        targets: held-out client inputs (N, C, H, W) the client runs split inference on; also the
            ground truth for scoring (never used for the guesses).
        max_targets: rows of an observed batch to attack when ``targets`` is None.
        phase: phase of the observed batch when ``targets`` is None ("eval" or "train").
        seed: seeds the attack's own randomness.
        attacker: the party whose seat the attack takes (default: the server); it must be the party
            the topology declares as the first receiver of the client's activations, e.g. "hop1"
            in multi-hop.
    """

    #: the party whose seat the attack takes unless ``attacker=`` names another
    attacker = "server"

    @property
    def observes_training(self) -> bool:
        """Only when attacking a training batch; held-out targets need just the trained model."""
        return self.targets is None and self.phase == "train"

    def __init__(self, *, targets: torch.Tensor | None = None, max_targets: int = 32, phase: str = "eval",
                 seed: int = 0, attacker: str | None = None) -> None:
        if attacker is not None:
            if not isinstance(attacker, str) or not attacker:
                raise ConfigError(f"attacker must be a party name, got {attacker!r}")
            self.attacker = attacker
        if phase not in ("eval", "train"):
            raise ConfigError(f"phase must be 'eval' or 'train', got {phase!r}")
        if targets is not None and targets.dim() != 4:
            raise ConfigError(f"{self.name} needs image targets (N, C, H, W), got shape {tuple(targets.shape)}")
        if max_targets < 1:
            raise ConfigError(f"max_targets must be >= 1, got {max_targets}")
        self.targets = targets
        self.max_targets = max_targets
        self.phase = phase
        self.seed = seed
        self.topology = None
        self._last: torch.Tensor | None = None
        self._observed_targets: torch.Tensor | None = None
        self._remove_tap = None

    # -- applicability ---------------------------------------------------------------------------
    def check_applicable(self, topology, dataset) -> None:
        if getattr(dataset, "kind", "image") == "tabular" or len(getattr(dataset, "input_shape", (1, 1, 1))) != 3:
            raise NotApplicable(TABULAR_REASON)
        self._check_topology(topology)

    def draw_auxiliary(self, dataset) -> None:
        """Default auxiliary images, for attacks that take ``auxiliary``/``aux_size``: the last ``aux_size``
        training images, disjoint from the held-out test images attacked and scored."""
        if self.auxiliary is None:
            if dataset is None:
                raise NotApplicable(f"{self.name} needs auxiliary images (auxiliary=) or a data set to draw them from")
            self.auxiliary = dataset.x_train[-self.aux_size:]

    seat_option = "attacker"

    @property
    def seat(self) -> str:
        return self.attacker

    def candidate_seats(self, topology) -> tuple[str, ...]:
        """The party that receives the client's released activations (the server, or hop1 in multi-hop)."""
        receiver = topology.first_receiver
        return (receiver,) if receiver is not None else (self.attacker,)

    def _check_topology(self, topology) -> None:
        if topology.owners is None or topology.segments is None:
            raise NotApplicable(f"{self.name} needs a chain topology whose first segment is the client's")
        receiver = topology.first_receiver
        if receiver != self.attacker:
            raise NotApplicable(f"the {self.attacker} does not receive the client's activations in "
                                f"{topology.name} (the client sends them to {receiver!r})")

    # -- observation -----------------------------------------------------------------------------
    def on_setup(self, trainer) -> None:
        self.attach(trainer.topology)

    def attach(self, topology) -> None:
        """Tap the server's messages of ``topology`` (``on_setup`` does this; call it directly without a Trainer)."""
        self._check_topology(topology)
        if self._remove_tap is not None:
            self._remove_tap()
        self.topology = topology
        self._remove_tap = topology.channel.add_tap(self.attacker, self._observe)

    #: keep the latest training-phase release in ``_received`` (attacks that learn while the client trains)
    watches_training_releases: ClassVar[bool] = False

    def _observe(self, message) -> None:
        if not (message.kind == "activation" and message.src == self.topology.data_owner
                and message.dst == self.attacker):
            return
        if message.phase == self.phase:
            self._last = message.tensor.detach().clone()
        if self.watches_training_releases and message.phase == "train":
            self._received = message.tensor.detach()

    def observed(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the target activations as the server saw them, the ground-truth inputs or None)."""
        if self.topology is None:
            raise ConfigError(f"{self.name} observes nothing until attached: pass it to a Trainer or call attach(topology)")
        if self.targets is not None:
            if self._observed_targets is None:
                self._observed_targets = self._client_inference(self.targets)
            return self._observed_targets, self.targets.detach().cpu()
        if self._last is None:
            raise ConfigError(f"{self.name} has not observed any {self.phase}-phase activation from the client; "
                              "pass targets= to have the client run inference on a held-out batch")
        return self._last[: self.max_targets], None

    def _client_inference(self, x: torch.Tensor) -> torch.Tensor:
        """The client runs split inference on ``x``; returns what the server's tap received."""
        modes = [s.training for s in self.topology.segments]
        previous_phase, self.phase = self.phase, "eval"
        self._last = None
        try:
            self.topology.eval()
            device = next(self.topology.segments[0].parameters()).device
            self.topology.predict(x.to(device))
        finally:
            self.phase = previous_phase
            for segment, mode in zip(self.topology.segments, modes):
                segment.train(mode)
        if self._last is None:
            raise ConfigError(f"the {self.attacker}'s tap saw no activation while the client ran inference")
        return self._last

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.targets is not None:
            return tuple(self.targets.shape[1:])
        shape = self.topology.input_shape
        if shape is None:
            raise ConfigError(f"{self.name} cannot tell the input shape; pass targets=")
        return tuple(shape)

    # -- result ----------------------------------------------------------------------------------
    def result(self) -> AttackResult:
        z, originals = self.observed()
        start = time.perf_counter()
        reconstructions, info = self.reconstruct(z)
        info = {"seconds": time.perf_counter() - start, "num_targets": int(z.shape[0]),
                "activation_shape": list(z.shape[1:]), **self.params(), **info}
        if self.attacker != type(self).attacker:  # a seat other than the default one (e.g. "hop1") is reported
            info["attacker"] = self.attacker
        return AttackResult(attack=self.name, threat_model=self.threat_model.describe(),
                            reconstructions=reconstructions.detach().clamp(0, 1).cpu(), originals=originals, info=info)

    def reconstruct(self, z: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Guess the inputs behind activations ``z``; returns (images in [0, 1], info)."""
        raise NotImplementedError


class LearnsFromReleases(ReconstructionAttack):
    """Base of passive attacks that train networks of their own beside training, on every batch the
    client releases (SDAR, FORA): the first release fixes the networks' shapes (``_build``), then each
    received batch gets ``steps_per_batch`` updates (``_update``, whose log rows go to ``history``).
    The protocol is untouched: the attack only reads what the server received."""

    watches_training_releases = True
    observes_training = True  # it learns from the training traffic, not only from the trained model

    def __init__(self, *, steps_per_batch: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps_per_batch = steps_per_batch
        self._received: torch.Tensor | None = None
        self._built = False
        self.history: list[dict] = []

    def on_step_end(self, *, step, loss) -> None:
        z_priv = self._received
        if z_priv is None or self.topology is None:
            return
        self._received = None
        if not self._built:
            self._build(z_priv)
            self._built = True
        for _ in range(self.steps_per_batch):
            self.history.append(self._update(z_priv))

    def _build(self, z: torch.Tensor) -> None:
        """Create the attack's networks and optimizers for releases shaped like ``z``."""
        raise NotImplementedError

    def _update(self, z_priv: torch.Tensor) -> dict:
        """One update of the attack's networks against the received release ``z_priv``; returns a log row."""
        raise NotImplementedError
