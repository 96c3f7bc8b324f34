"""Black-box inverse network (He, Zhang and Lee, ACSAC 2019).

The server does not know the client's weights. It owns auxiliary images from the same distribution
and can query the client segment on them (query access: e.g. through the client's inference
service), so it learns a decoder from activations back to inputs and applies it to the
activations it observes. He et al. report SSIM ~0.99 on MNIST at shallow cuts.

Auxiliary data: by default the last ``aux_size`` (3,000) training images of the data set, which are
disjoint from the held-out test images attacked and scored; 10 epochs by default (results beside He
et al.'s in benchmarks/README.md, "Reconstruction attacks"). A tenth of them (at least one batch) is
held out to pick the epoch whose decoder scores best (early stopping); the attacker never reads the
targets for it. Each epoch the attacker may query shifted copies of its images (``shift`` pixels,
a cheap way to get more queries from the same images). Audits that need it fast pass a smaller
``aux_size``/``epochs``. The queries are simulated by running a frozen copy of the client segment;
they are not counted as channel traffic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from secsplit.attacks.base import ATTACKS, ThreatModel, in_batches
from secsplit.attacks.decoders import ImageDecoder, fit_decoder, geometry_plan, held_out_size
from secsplit.attacks.reconstruction_base import ReconstructionAttack, frozen_copy
from secsplit.errors import ConfigError

__all__ = ["InverseNetwork", "geometry_plan"]  # geometry_plan: the shared decoder's, kept importable here


def _shifted(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image translated by up to ``shift`` pixels each way (zero fill), for fresh queries every epoch."""
    if shift == 0 or x.dim() != 4:
        return x
    padded = F.pad(x, (shift,) * 4)
    dy, dx = torch.randint(0, 2 * shift + 1, (2, len(x)), generator=generator).tolist()
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(dy, dx))])


@ATTACKS.register("inverse-network")
class InverseNetwork(ReconstructionAttack):
    """Black-box inverse network (He et al., ACSAC'19): learn activations -> inputs on queried auxiliary data.

    Args:
        auxiliary: the attacker's own images (N, C, H, W) in [0, 1]; default: the last ``aux_size``
            training images of the audited data set.
        aux_size: how many auxiliary images to take by default.
        epochs, lr, batch_size: decoder training (one-cycle Adam); the epoch with the best held-out score is kept.
        ssim_weight: weight of (1 - SSIM) beside the MSE in the decoder's loss.
        shift: queries per epoch are the auxiliary images shifted by up to this many pixels (0: as they are).
        targets, max_targets, phase, seed, attacker: see :class:`ReconstructionAttack`.
    """

    name = "inverse-network"
    threat_model = ThreatModel(attacker="server", behaviour="honest-but-curious",
                               knows=("query-access", "auxiliary-data"), target="inputs")
    search_space = {"epochs": [10, 20, 40], "aux_size": [1000, 3000]}
    tuning_trials = 4

    def __init__(self, *, auxiliary: torch.Tensor | None = None, aux_size: int = 3000, epochs: int = 10,
                 lr: float = 1e-2, batch_size: int = 32, ssim_weight: float = 0.1, shift: int = 0,
                 targets: torch.Tensor | None = None, max_targets: int = 32,
                 phase: str = "eval", seed: int = 0, attacker: str | None = None) -> None:
        super().__init__(targets=targets, max_targets=max_targets, phase=phase, seed=seed, attacker=attacker)
        if aux_size < 2 or epochs < 1 or lr <= 0 or batch_size < 1 or ssim_weight < 0 or shift < 0:
            raise ConfigError(f"{self.name} needs aux_size >= 2, epochs, batch_size >= 1, lr > 0, ssim_weight >= 0 "
                              "and shift >= 0")
        self.auxiliary, self.aux_size, self.epochs, self.lr, self.batch_size = auxiliary, aux_size, epochs, lr, batch_size
        self.ssim_weight, self.shift = ssim_weight, shift

    def check_applicable(self, topology, dataset) -> None:
        super().check_applicable(topology, dataset)
        self.draw_auxiliary(dataset)

    def params(self) -> dict:
        return {"aux_size": None if self.auxiliary is None else len(self.auxiliary), "epochs": self.epochs,
                "lr": self.lr, "batch_size": self.batch_size, "ssim_weight": self.ssim_weight, "shift": self.shift}

    def reconstruct(self, z):
        if self.auxiliary is None:
            raise ConfigError(f"{self.name} has no auxiliary data: pass auxiliary= or run it through an audit")
        if len(self.auxiliary) < 2:
            raise ConfigError(f"{self.name} needs at least 2 auxiliary images, got {len(self.auxiliary)}")
        segment = frozen_copy(self.topology.segments[0]).to(z.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            aux = self.auxiliary[torch.randperm(len(self.auxiliary), generator=gen)].to(z.device)
            held = held_out_size(len(aux), self.batch_size)
            train, val = aux[held:], aux[:held]
            with torch.no_grad():  # the queries: the client segment's answers on the attacker's own images
                z_train, z_val = in_batches(segment, train), in_batches(segment, val)
            decoder = ImageDecoder(tuple(z.shape[1:]), tuple(aux.shape[1:])).to(z.device)

            def shifted_queries() -> tuple[torch.Tensor, torch.Tensor]:
                x_epoch = _shifted(train, self.shift, gen)
                return in_batches(segment, x_epoch), x_epoch

            log = fit_decoder(decoder, z_train, train, z_val, val, epochs=self.epochs, lr=self.lr,
                              batch_size=self.batch_size, ssim_weight=self.ssim_weight, generator=gen,
                              refresh=shifted_queries if self.shift else None)
        with torch.no_grad():
            return decoder.eval()(z), log
