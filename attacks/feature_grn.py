"""Generative Regression Network (GRN) feature inference against passive parties in vertical split
learning (Luo, Wu, Xiao and Ooi, "Feature Inference Attack on Model Predictions in Vertical
Federated Learning", ICDE 2021).

Setting. In vertical split learning each client holds some columns of every sample. The *active*
party of VFL holds the top model, the labels and features of its own; in secsplit's ``vertical``
topology that is the server together with ``client0`` (the server colluding with, or run by the
same organisation as, client0). The passive clients 1..k-1 hold the other columns. GRN's adversary
knows the trained model (white-box: every bottom segment's weights, "client-weights"), its own
features, and what it observes per sample:

- ``observe="predictions"`` (GRN's setting): the model's output for each sample (the logits the
  server computes at inference);
- ``observe="representation"``: the cut activation each passive client releases to the server
  (what split VFL hands the server on top of the predictions).

Attack. A generator G(x_own, r) -> x_passive (an MLP over the adversary's own features and noise r)
is trained over all attacked samples so that the model fed with the adversary's own features and
G's guess reproduces what was observed: || softmax(f(x_own, G(x_own, r))) - v ||^2 for predictions
(GRN's loss), or the (scale-normalized) squared error between each passive client's segment on its
guessed columns and the activation it released. A small L2 pull towards the feature mean (the
standardized zero) regularizes the many solutions the predictions alone allow (GRN bounds the
generated values for the same reason).

Scored (tabular data): MSE of the guessed passive columns in standardized units, beside the
mean-feature baseline (every column guessed as its training mean: a label-independent control),
and R^2 = 1 - SSE/SST per column (0 = the mean baseline; 1 = exact), averaged over the passive
columns (``r2``) with the share of columns the attack beats the baseline on. Beside them, GRN's own
metric (from the authors' code): MSE per feature with every feature min-max scaled to [0, 1]
(``mse_per_feature_01``) against a uniform random guess in [0, 1] (``random_guess_mse_01``), a
weaker control than the mean.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
import torch.nn.functional as F
from secsplit.attacks.base import (
    ATTACKS,
    Attack,
    AttackResult,
    NotApplicable,
    ThreatModel,
)
from torch import nn

from secsplit.errors import ConfigError

OBSERVATIONS = ("predictions", "representation")


def _frozen(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module).eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


@ATTACKS.register("grn")
class GenerativeRegressionNetwork(Attack):
    """GRN (Luo et al., ICDE'21): regress the passive clients' features from observations and own features.

    Args:
        observe: "predictions" (the model's outputs, GRN's setting) or "representation" (the passive
            clients' released cut activations).
        steps: full-batch Adam steps training the generator.
        lr: its learning rate.
        hidden: width of the generator's two hidden layers.
        noise_dim: size of the generator's noise input r.
        prior_weight: weight of the L2 pull of the guesses towards the feature mean.
        max_targets: how many test samples to attack (the first ones of the test split).
        seed: seeds the generator and its noise.
    """

    name = "grn"
    threat_model = ThreatModel(attacker="server", behaviour="honest-but-curious", knows=("client-weights",),
                               target="inputs")
    observes_training = False  # it attacks the trained model at inference
    #: the attack's own hyperparameters for tuning (see Attack.search_space)
    search_space: ClassVar[dict] = {"prior_weight": [0.0, 0.01, 0.1], "hidden": [64, 256], "steps": [1000, 3000]}

    def __init__(self, *, observe: str = "predictions", steps: int = 2000, lr: float = 1e-3, hidden: int = 128,
                 noise_dim: int = 8, prior_weight: float = 0.01, max_targets: int = 1024, seed: int = 0) -> None:
        if observe not in OBSERVATIONS:
            raise ConfigError(f"unknown observation {observe!r}; valid: {', '.join(OBSERVATIONS)}")
        if steps < 1 or lr <= 0 or hidden < 1 or noise_dim < 0 or prior_weight < 0 or max_targets < 1:
            raise ConfigError(f"{self.name} needs steps, hidden, max_targets >= 1, lr > 0, noise_dim, prior_weight >= 0")
        self.observe, self.steps, self.lr, self.hidden = observe, int(steps), float(lr), int(hidden)
        self.noise_dim, self.prior_weight, self.max_targets, self.seed = int(noise_dim), float(prior_weight), int(max_targets), seed
        self.topology = None
        self.dataset = None

    def params(self) -> dict:
        return {"observe": self.observe, "steps": self.steps, "lr": self.lr, "hidden": self.hidden,
                "noise_dim": self.noise_dim, "prior_weight": self.prior_weight, "max_targets": self.max_targets}

    # -- applicability ---------------------------------------------------------------------------
    def check_applicable(self, topology, dataset) -> None:
        views = getattr(topology, "views", None)
        if views is None or not hasattr(topology, "heads"):
            raise NotApplicable(f"{self.name} infers the features of passive clients in vertical split learning; "
                                f"{getattr(topology, 'name', 'this topology')} has one data owner holding every feature")
        if getattr(topology, "ushape", False):
            raise NotApplicable(f"{self.name} needs the active party's model output (the server's logits); in "
                                f"{topology.name} the last layer and the predictions stay with client0")
        if getattr(dataset, "kind", "tabular") != "tabular" or any(v.columns is None for v in views):
            raise NotApplicable(f"{self.name} scores per-feature R^2 on tabular columns; image regions are "
                                f"reconstructed by the reconstruction attacks")
        self.topology, self.dataset = topology, dataset

    def on_setup(self, trainer) -> None:
        if self.dataset is None:
            raise ConfigError(f"{self.name} needs the data set: call check_applicable(topology, dataset) first")
        self.check_applicable(trainer.topology, self.dataset)

    # -- the attack ------------------------------------------------------------------------------
    def _model(self):
        heads = [_frozen(h) for h in self.topology.heads]  # white-box copies ("client-weights")
        merger, body = _frozen(self.topology.merger), _frozen(self.topology.body)
        return heads, merger, body

    def result(self) -> AttackResult:
        if self.topology is None:
            raise ConfigError(f"{self.name} has no trained vertical topology: call check_applicable first")
        topology, views = self.topology, self.topology.views
        device = next(topology.heads[0].parameters()).device
        x = self.dataset.x_test[: self.max_targets].to(device)
        heads, merger, body = self._model()
        own = views[0](x)
        passive = list(range(1, len(views)))
        truth = [views[p](x) for p in passive]  # scoring only
        widths = [t.shape[1] for t in truth]
        with torch.no_grad():
            # what the server observes: each client's release at inference, and the logits it computes from them
            released = [heads[i](views[i](x)) for i in range(len(views))]
            observed_logits = body(merger(released))
        v = observed_logits.softmax(1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            generator = nn.Sequential(nn.Linear(own.shape[1] + self.noise_dim, self.hidden), nn.ReLU(),
                                      nn.Linear(self.hidden, self.hidden), nn.ReLU(),
                                      nn.Linear(self.hidden, sum(widths))).to(device)
            noise = torch.randn(len(x), self.noise_dim, device=device)
        optimizer = torch.optim.Adam(generator.parameters(), lr=self.lr)
        scales = [r.pow(2).mean().clamp_min(1e-8) for r in released]
        history = []
        with torch.enable_grad():
            for step in range(self.steps):
                optimizer.zero_grad(set_to_none=True)
                guess = generator(torch.cat([own, noise], 1)).split(widths, 1)
                if self.observe == "predictions":
                    parts = [released[0], *[heads[p](g) for p, g in zip(passive, guess)]]
                    fit = (body(merger(parts)).softmax(1) - v).pow(2).sum(1).mean()
                else:
                    fit = sum(((heads[p](g) - released[p]).pow(2).mean() / scales[p]) for p, g in zip(passive, guess))
                loss = fit + self.prior_weight * torch.cat(guess, 1).pow(2).mean()
                loss.backward()
                optimizer.step()
                if step % 200 == 0 or step == self.steps - 1:
                    history.append(float(fit.detach()))
        with torch.no_grad():
            guess = torch.cat(generator(torch.cat([own, noise], 1)).split(widths, 1), 1).cpu()
        truth = torch.cat(truth, 1).cpu()
        info = self.score(guess, truth)
        info.update(passive_clients=len(passive), passive_features=int(truth.shape[1]),
                    num_targets=len(x), fit_per_200_steps=history, **self.params())
        return AttackResult(attack=self.name, threat_model=self.threat_model.describe(), info=info)

    def score(self, guess: torch.Tensor, truth: torch.Tensor) -> dict:
        """MSE and per-feature R^2 of ``guess`` against ``truth``, beside the training-mean baseline; and
        GRN's own metric: MSE per feature on features min-max scaled to [0, 1] (training range, guesses
        clipped into it) beside a uniform random guess in [0, 1] (expected MSE t^2 - t + 1/3 per value)
        and beside the mean baseline on the same scale.
        Columns constant on the attacked samples (in training, for the [0, 1] metric) are left out."""
        columns = [c for v in self.topology.views[1:] for c in v.columns]
        train = self.dataset.x_train[:, columns].cpu()
        baseline = train.mean(0, keepdim=True).expand_as(truth)
        sse = (guess - truth).pow(2).sum(0)
        sst = (truth - truth.mean(0, keepdim=True)).pow(2).sum(0)
        varying = sst > 1e-8 * len(truth)
        r2 = (1 - sse / sst.clamp_min(1e-12))[varying]
        r2_baseline = (1 - (baseline - truth).pow(2).sum(0) / sst.clamp_min(1e-12))[varying]
        low, high = train.min(0).values, train.max(0).values
        ranged = (high - low) > 1e-8  # a column constant in training has no [0, 1] scale
        span = (high - low)[ranged]
        truth01 = ((truth[:, ranged] - low[ranged]) / span).clamp(0, 1)
        guess01 = ((guess[:, ranged] - low[ranged]) / span).clamp(0, 1)
        baseline01 = ((baseline[:, ranged] - low[ranged]) / span).clamp(0, 1)
        return {"feature_mse": float(F.mse_loss(guess, truth)), "mean_baseline_mse": float(F.mse_loss(baseline, truth)),
                "r2": float(r2.mean()), "r2_median": float(r2.median()), "mean_baseline_r2": float(r2_baseline.mean()),
                "features_beating_mean": float((r2 > r2_baseline).float().mean()),
                "constant_features": int((~varying).sum()),
                "mse_per_feature_01": float(F.mse_loss(guess01, truth01)),
                "random_guess_mse_01": float((truth01.pow(2) - truth01 + 1 / 3).mean()),
                "mean_baseline_mse_01": float(F.mse_loss(baseline01, truth01)),
                "r2_per_feature": [round(float(v), 4) for v in r2]}
