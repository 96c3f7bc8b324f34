"""DP-SGD on the data owner's segments (Opacus), with the gradient arriving from the server.

What it protects: the client's *weights* (and so anything later released from them, e.g. a model
handed to others) against membership and reconstruction attacks on the training set, with an
(epsilon, delta) guarantee from Opacus' accountants. It does **not** make each activation release
private: the cut-layer outputs sent every step are computed from raw data without noise; use the
``noise`` defense for that.

Pitfalls this module handles (measured with Opacus 1.6 + torch 2.13):
- the loss is a mean over the batch at whichever party computes it, and Opacus is told
  ``loss_reduction="mean"``; a sum/mean mismatch silently scales every per-sample gradient by B;
- everything the client trains (U-shape head *and* tail) is one GradSampleModule with one DP
  optimizer, so one Poisson batch is accounted once (two engines would under-report epsilon);
- batches are Poisson-sampled (the Trainer switches to it); empty batches skip the step but are
  still accounted, which can only over-state epsilon;
- monitoring forwards run under ``torch.no_grad()`` (the Trainer's evaluation does), so Opacus
  captures no activations there;
- epsilon is reported from the PRV and RDP accountants, not from the GDP one (it under-reports).
"""

from __future__ import annotations

import warnings

from secsplit.callbacks import Callback
from secsplit.defenses.base import DEFENSES, Defense
from secsplit.errors import ConfigError

ACCOUNTANTS = ("prv", "rdp")


@DEFENSES.register("dpsgd")
class ClientDPSGD(Defense):
    """DP-SGD (per-sample clipping + Gaussian noise) on the client's segments via Opacus.

    Args:
        noise_multiplier: noise std / max_grad_norm; give this or ``target_epsilon``.
        max_grad_norm: per-sample gradient clipping bound.
        target_epsilon: find the noise multiplier that reaches this epsilon after all epochs.
        delta: the delta of the (epsilon, delta) guarantee.
        accountant: which accountant picks the noise in target mode ("prv" or "rdp"); both are reported.
        seed: seeds the DP noise.
    """

    name = "dpsgd"
    addresses = "membership inference and training-data reconstruction from the client's trained weights"
    threat_model = "anyone who later sees the client segment's weights; NOT the per-step activation releases"

    def __init__(self, *, noise_multiplier: float | None = None, max_grad_norm: float = 1.0,
                 target_epsilon: float | None = None, delta: float = 1e-5, accountant: str = "prv", seed: int = 0) -> None:
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ConfigError("dpsgd needs exactly one of noise_multiplier= or target_epsilon=")
        if accountant not in ACCOUNTANTS:
            raise ConfigError(f"unknown accountant {accountant!r}; valid: {', '.join(ACCOUNTANTS)}")
        for label, value in (("max_grad_norm", max_grad_norm), ("noise_multiplier", noise_multiplier), ("target_epsilon", target_epsilon)):
            if value is not None and not value > 0:
                raise ConfigError(f"{label} must be > 0, got {value}")
        if not 0 < delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {delta}")
        self.noise_multiplier = noise_multiplier
        self.max_grad_norm = max_grad_norm
        self.target_epsilon = target_epsilon
        self.delta = delta
        self.accountant_name = accountant
        self.seed = seed
        self.sample_rate: float | None = None
        self.steps = 0
        self._restored_generator = None
        self._restored_noise: tuple[float, float] | None = None  # (noise multiplier, sample rate) at the checkpoint
        self.module = None
        self.optimizer = None

    # -- setup -----------------------------------------------------------------------------------
    def on_setup(self, trainer) -> None:
        import torch
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        others = [cb for cb in trainer.callbacks.callbacks if cb is not self]
        if any(type(cb).extra_loss is not Callback.extra_loss for cb in others):
            raise ConfigError(
                "dpsgd cannot be combined with a defense that adds a batch-level loss (e.g. nopeek): "
                "a loss over the whole batch couples the samples, so per-sample clipping no longer bounds "
                "each sample's influence and the stated epsilon would be wrong")
        topology = trainer.topology
        party = topology.parties[topology.data_owner]
        if party.optimizer is None:
            raise ConfigError(f"dpsgd: party {party.name!r} has no trainable parameters")
        trainer.sampling = "poisson"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.module = GradSampleModule(party.segments, loss_reduction="mean")
        self._party = party
        self._plain_optimizer = party.optimizer
        self._expected_batch_size = trainer.batch_size
        self._make_optimizer = lambda nm: DPOptimizer(
            self._plain_optimizer, noise_multiplier=nm, max_grad_norm=self.max_grad_norm,
            expected_batch_size=self._expected_batch_size, loss_reduction="mean",
            generator=torch.Generator(device=trainer.device).manual_seed(self.seed))

    def on_fit_start(self, *, num_samples, epochs, batch_size):
        from opacus.accountants.utils import get_noise_multiplier

        self.sample_rate = min(1.0, batch_size / num_samples)
        steps_per_epoch = max(1, round(num_samples / batch_size))
        if self.target_epsilon is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.noise_multiplier = get_noise_multiplier(
                    target_epsilon=self.target_epsilon, target_delta=self.delta, sample_rate=self.sample_rate,
                    steps=max(1, epochs * steps_per_epoch), accountant=self.accountant_name)
        if self._restored_noise is not None and self._restored_noise != (self.noise_multiplier, self.sample_rate):
            raise ConfigError(
                f"dpsgd: the checkpoint was trained with noise multiplier {self._restored_noise[0]:.6g} and sample "
                f"rate {self._restored_noise[1]:.6g}; this run gives {self.noise_multiplier:.6g} and "
                f"{self.sample_rate:.6g} (target_epsilon is spread over the run's epochs): resume with the same "
                f"epochs, or train anew, so that one accounting covers every step")
        self.optimizer = self._party.optimizer = self._make_optimizer(self.noise_multiplier)
        if self._restored_generator is not None:  # a resumed run: the noise goes on where it stopped
            self.optimizer.generator.set_state(self._restored_generator)
            self._restored_generator = None

    def on_step_end(self, *, step, loss):
        self.steps += 1

    def state_dict(self):
        """The steps taken (the accountant's history) and the noise generator: a resumed run neither replays
        noise already used nor forgets steps, so it reports the uninterrupted run's epsilon."""
        generator = self.optimizer.generator.get_state() if self.optimizer is not None else self._restored_generator
        return {"steps": self.steps, "generator": generator, "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate}

    def load_state_dict(self, state):
        self.steps, self._restored_generator = int(state["steps"]), state["generator"]
        self._restored_noise = (float(state["noise_multiplier"]), float(state["sample_rate"]))

    # -- report ----------------------------------------------------------------------------------
    def params(self):
        return {"noise_multiplier": self.noise_multiplier, "max_grad_norm": self.max_grad_norm,
                "target_epsilon": self.target_epsilon, "delta": self.delta}

    def epsilon(self) -> dict | None:
        if self.sample_rate is None or self.steps == 0:
            return None
        return {"prv": self._epsilon("prv"), "rdp": self._epsilon("rdp"), "delta": self.delta,
                "steps": self.steps, "sample_rate": self.sample_rate, "noise_multiplier": self.noise_multiplier,
                "notion": "DP-SGD on the client segment's weights (sample-level, add/remove)"}

    def _epsilon(self, kind: str) -> float:
        from opacus.accountants import PRVAccountant, RDPAccountant

        accountant = PRVAccountant() if kind == "prv" else RDPAccountant()
        # one history entry covers all steps: (noise_multiplier, sample_rate, steps)
        accountant.history = [(self.noise_multiplier, self.sample_rate, self.steps)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(accountant.get_epsilon(delta=self.delta))
