"""SplitOut: detect training hijacking with an off-the-shelf outlier detector (Erdogan et al., "SplitOut:
Out-of-the-Box Training-Hijacking Detection in Split Learning via Outlier Detection", arXiv 2302.08618).

The client knows its labels and the server's architecture (not its weights). Before trusting the
server it simulates honest split training end to end on a little of its own data: a fresh copy of
the whole model (its own segment and the server's, re-initialized, seeded) trained for
``sim_epochs`` epochs on ``sim_samples`` samples with the real batch size and its own optimizer. The
gradients of its own segment's weights along that run are the honest examples; a Local Outlier
Factor (scikit-learn, ``novelty=True``, the most neighbours the examples allow, as the paper) is
fitted on them. During real training every step's gradient of the client segment's weights (what
the server's returned gradient makes of them) is scored; when more than ``threshold`` of the last
``window`` decisions are outliers, the client stops sending activations. Paper: TPR 1, FPR 0 against
FSHA on MNIST and Fashion-MNIST.

Here the simulation data are the client's first ``sim_samples`` training samples, gathered from
its first batches (the defense plugs into a Trainer and is not handed the data set), so the
detector is armed after ``ceil(sim_samples / batch_size)`` steps; the steps before are scored
retroactively when it is armed (``armed_at_step`` in the report says when). Threat model: an
active server returning gradients of its own objective (FSHA and other hijacking). Guarantee:
none; detection rate and false alarms are measured (docs/defenses.md).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from secsplit.defenses.base import DEFENSES, Defense
from secsplit.defenses.layers import chain_segments, reinitialized
from secsplit.errors import ConfigError, TrainingStopped


FEATURES = ("raw", "direction")


def _flat_grad(module: torch.nn.Module, features: str = "raw") -> np.ndarray:
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).double().cpu()
             for p in module.parameters() if p.requires_grad]
    flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
    if features == "direction":
        flat = flat / flat.norm().clamp_min(1e-12)
    return flat.numpy()


@DEFENSES.register("splitout")
class SplitOut(Defense):
    """Fit a Local Outlier Factor on client-weight gradients of a short honest simulation; stop on outliers (SplitOut).

    Args:
        sim_samples: the client's own training samples the honest simulation trains on.
        sim_epochs: epochs of the simulation (one honest gradient per simulated step). Default 40: the
            simulation then runs past the point where real training's gradients shrink (with 10, honest
            runs on digits raised a false alarm in their second epoch in 6 of 6 seeds, 0 of 6 with 40;
            docs/defenses.md).
        window: decisions the alarm looks at.
        threshold: alarm when more than this fraction of the last ``window`` decisions are outliers.
        features: "raw" (the flattened gradient, as the paper) or "direction" (its unit vector).
            Measured (digits and a synthetic image set, LeNet, 2 seeds): "direction" flags nothing,
            not even FSHA; the size of the gradient is what tells FSHA apart.
        seed: seeds the simulation's model re-initialization and data order.
    """

    name = "splitout"
    addresses = "training hijacking by an active server (FSHA and other servers returning non-task gradients)"
    threat_model = ("active (malicious) server; the client knows its labels and the server's architecture; "
                    "detection, no formal guarantee")

    def __init__(self, *, sim_samples: int = 128, sim_epochs: int = 40, window: int = 10, threshold: float = 0.5,
                 features: str = "raw", seed: int = 0) -> None:
        if features not in FEATURES:
            raise ConfigError(f"splitout features must be one of {', '.join(FEATURES)}, got {features!r}")
        self.features = features
        if sim_samples < 2 or sim_epochs < 1 or window < 1 or not 0 <= threshold < 1:
            raise ConfigError(f"splitout needs sim_samples >= 2, sim_epochs >= 1, window >= 1, 0 <= threshold < 1; "
                              f"got {sim_samples}, {sim_epochs}, {window}, {threshold}")
        self.sim_samples, self.sim_epochs, self.window, self.threshold, self.seed = sim_samples, sim_epochs, window, threshold, seed
        self.detector = None
        self.examples: np.ndarray | None = None
        self.batch_size = 64
        self.xs: list[torch.Tensor] = []
        self.ys: list[torch.Tensor] = []
        self._labels: torch.Tensor | None = None
        self.pending: list[tuple[int, np.ndarray]] = []
        self.decisions: deque = deque(maxlen=window)
        self.outliers: list[int] = []
        self.steps_checked = 0
        self.honest_examples = 0
        self.armed_at: int | None = None
        self.detected_at: int | None = None
        self.stopped = False

    # -- setup -------------------------------------------------------------------------------------
    def on_setup(self, trainer) -> None:
        topology = trainer.topology
        self.segments, self.owners = chain_segments(topology, self.name)
        self.topology = topology
        self.client = topology.data_owner
        knows_labels = topology.label_owner == topology.data_owner or topology.label_source == "data_owner"
        if not knows_labels:
            raise ConfigError("splitout simulates honest training, so it needs labels at the client (vanilla with "
                              "client-sent labels, or U-shape); here the server holds them")
        self.client_segment = self.segments[0]
        self.client_optimizer = topology.parties[self.client].optimizer
        trainer.channel.add_tap(self.client, self._observe)

    def on_fit_start(self, *, num_samples, epochs, batch_size):
        self.batch_size = batch_size

    def _observe(self, message) -> None:
        if message.phase == "train" and message.kind == "labels" and message.src == self.client:
            self._labels = message.tensor.detach()

    def transform_labels(self, y, *, party, step):
        if party == self.client and y.dim() == 1:
            self._labels = y.detach()
        return y

    def extra_loss(self, x, z, *, party, step):
        if party == self.client and self.detector is None and self._labels is not None:
            collected = sum(len(b) for b in self.xs)
            if collected < self.sim_samples:
                self.xs.append(x.detach().cpu())
                self.ys.append(self._labels.detach().cpu())
        return None

    # -- honest simulation -------------------------------------------------------------------------
    def simulate(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Gradients of the client segment's weights along a fresh, honest, end-to-end training run on (x, y)."""
        model = torch.nn.Sequential(*[reinitialized(s, seed=self.seed + i) for i, s in enumerate(self.segments)])
        head = model[0]
        opt_class = type(self.client_optimizer) if self.client_optimizer is not None else torch.optim.Adam
        defaults = dict(self.client_optimizer.defaults) if self.client_optimizer is not None else {"lr": 1e-3}
        opt = opt_class(model.parameters(), **defaults)
        device = next(iter(head.parameters())).device
        x, y = x.to(device), y.to(device)
        generator = torch.Generator().manual_seed(self.seed)
        examples = []
        for _ in range(self.sim_epochs):
            for index in torch.randperm(len(x), generator=generator).split(self.batch_size):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[index]), y[index]).backward()
                examples.append(_flat_grad(head, self.features))
                opt.step()
        return np.stack(examples)

    def arm(self, step: int) -> None:
        x = torch.cat(self.xs)[: self.sim_samples]
        y = torch.cat(self.ys)[: self.sim_samples]
        self._fit_detector(self.simulate(x, y))
        self.armed_at = step
        self.xs, self.ys = [], []

    def _fit_detector(self, examples: np.ndarray) -> None:
        from sklearn.neighbors import LocalOutlierFactor

        self.examples = examples
        self.honest_examples = len(examples)
        self.detector = LocalOutlierFactor(n_neighbors=max(1, len(examples) - 1), novelty=True).fit(examples)

    # -- detection ---------------------------------------------------------------------------------
    def on_step_end(self, *, step, loss):
        if self.detected_at is not None or math.isnan(loss):
            return
        self.pending.append((step, _flat_grad(self.client_segment, self.features)))
        if self.detector is None:
            if sum(len(b) for b in self.xs) >= self.sim_samples:
                self.arm(step)
            else:
                return
        for at, features in self.pending:
            outlier = int(self.detector.predict(features[None])[0] == -1)
            self.decisions.append(outlier)
            self.outliers.append(outlier)
            self.steps_checked += 1
            if len(self.decisions) == self.window and sum(self.decisions) / self.window > self.threshold:
                self.detected_at = at
                break
        self.pending = []

    def transform_activation(self, z, *, party, step, phase):
        if party == self.client and self.detected_at is not None:
            self.stopped = True
            raise TrainingStopped(f"splitout: the server's gradients are outliers to honest training (detected at "
                                  f"step {self.detected_at}); the client sends no more activations")
        return z

    def state_dict(self):
        """Where detection stood: the samples collected or the honest gradients the detector is fitted on
        (it is refitted from them), the decisions so far and any alarm."""
        return {"xs": torch.cat(self.xs) if self.xs else None, "ys": torch.cat(self.ys) if self.ys else None,
                "examples": None if self.examples is None else torch.from_numpy(np.ascontiguousarray(self.examples)),
                "pending": [{"step": at, "features": torch.from_numpy(np.ascontiguousarray(f))} for at, f in self.pending],
                "decisions": list(self.decisions), "outliers": list(self.outliers), "steps_checked": self.steps_checked,
                "armed_at": self.armed_at, "detected_at": self.detected_at}

    def load_state_dict(self, state):
        self.xs = [] if state["xs"] is None else [state["xs"]]
        self.ys = [] if state["ys"] is None else [state["ys"]]
        self.detector, self.examples = None, None
        if state["examples"] is not None:
            self._fit_detector(state["examples"].numpy())
        self.pending = [(int(p["step"]), p["features"].numpy()) for p in state["pending"]]
        self.decisions = deque((int(d) for d in state["decisions"]), maxlen=self.window)
        self.outliers = [int(o) for o in state["outliers"]]
        self.steps_checked = int(state["steps_checked"])
        self.armed_at = None if state["armed_at"] is None else int(state["armed_at"])
        self.detected_at = None if state["detected_at"] is None else int(state["detected_at"])

    def params(self):
        return {"sim_samples": self.sim_samples, "sim_epochs": self.sim_epochs, "window": self.window,
                "threshold": self.threshold, "features": self.features}

    def report(self):
        return {**super().report(), "detected": self.detected_at is not None, "detected_at_step": self.detected_at,
                "armed_at_step": self.armed_at, "steps_checked": self.steps_checked,
                "outlier_fraction": float(np.mean(self.outliers)) if self.outliers else None,
                "honest_examples": self.honest_examples}
