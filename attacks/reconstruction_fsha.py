"""Feature-Space Hijacking Attack (Pasquini, Ateniese and Bernaschi, "Unleashing the Tiger: Inference
Attacks on Split Learning", CCS 2021).

Why it matters: the other reconstruction attacks here are passive, so a client segment that is
hard to invert (deep cut, NoPeek) limits them. FSHA is active: the server stops training the task
and instead *chooses* what the client segment learns. It returns, in place of the honest gradient,
the gradient of its own objective, which steers the client's encoder f into a feature space the
server already knows how to invert. It needs no labels and no client weights, only unlabeled
auxiliary images from the same distribution; the client cannot tell from its own loss (it sees
none in vanilla; in U-shape its loss simply stops improving). Hijack detection
(``defenses/hijack.py``) is the defense that looks for exactly this.

Each training step, at the server:

1. pilot f~ and decoder f~^-1 take one autoencoder step on a batch of auxiliary images;
2. the discriminator D takes one WGAN-GP step telling f(x_priv) (the activations just received)
   from f~(x_pub): it minimizes mean D(f~(x_pub)) - mean D(f(x_priv)) + gp_weight * GP;
3. instead of the honest gradient, the client gets d mean D(f(x_priv)) / d f(x_priv): its own
   optimizer then moves f to where D rates its outputs as pilot features.

When f(x) is distributed like f~(x), f~^-1(f(x)) reconstructs x. The targets are reconstructed
from the activations the server receives when the client runs split inference on them (phase
"eval"), as for the other reconstruction attacks. Paper: MSE ~0.02 in [-1, 1] (~0.005 in [0, 1])
on MNIST after ~10k iterations, ResNet client, gp weight 500, Adam lr 1e-5 (f~, f~^-1) / 1e-4 (D).

Differences from the paper, on purpose: the client keeps its own optimizer (the server cannot set
it; secsplit's default is Adam lr 1e-3, 100x the paper's lr for f), so the server keeps the paper's
*ratios* instead: the critic learns 10x faster than the client (lr 1e-2; at 1e-3 or 1e-4 the critic
cannot keep up and the client's features drift away, measured: reconstructions no better than the
mean image), pilot and decoder as fast as it (1e-3). The gradient penalty weight is WGAN-GP's 10
(500 works too, slightly worse here). The pilot's output goes through a ReLU when every activation
in the first batch the server receives is non-negative (it observes this, like the cut's shape): a
client ending in ReLU / max-pool cannot reach negative pilot features, and D would separate the two
spaces on the sign alone. For the same reason the pilot's units that the client has stopped using
lately (always zero in the received activations: dead ReLUs, which no gradient revives) are zeroed
in the pilot too (``mask_dead``). The networks are small (the client segments here are small).
The pilot follows the cut's geometry as the server sees it (input and activation shapes): strided
convolutions for each halving, then an unpadded convolution that trims the border as the client's
unpadded convolutions do, and the decoder gives that border back (zero padding) before upsampling.
With an area resize in the pilot instead (the earlier design) the client could not imitate the
pilot's scaled image and the hijack stalled at MSE 0.033-0.043 on MNIST LeNet relu1; with the
geometry it reaches the paper's error in a few hundred steps (benchmarks/README.md, "FSHA").
Convolutional cuts are where it works fast: on flat MLP features (digits, mlp, relu1) a few hundred
steps match the feature *distributions* but not which input goes where (measured: worse than the
mean image), as there is no spatial layout to pin the correspondence down.

Auxiliary data: by default the last ``aux_size`` training images of the data set (as for the
inverse network), disjoint from the held-out test images attacked and scored. The attack holds
no reference to the client's segment or weights: it builds its networks from the first received
activation and learns from received activations only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from secsplit.attacks.base import ATTACKS, AttackResult, ThreatModel
from secsplit.attacks.reconstruction_base import ReconstructionAttack
from secsplit.attacks.reconstruction_inverse import geometry_plan
from secsplit.errors import ConfigError, TrainingStopped


class _Resize(nn.Module):
    def __init__(self, size: tuple[int, int], mode: str) -> None:
        super().__init__()
        self.size, self.mode = tuple(size), mode

    def forward(self, x):
        if self.mode == "area":
            return F.adaptive_avg_pool2d(x, self.size)
        return F.interpolate(x, size=self.size, mode=self.mode, align_corners=False)


def _halvings(big: int, small: int) -> int:
    return max(0, int(math.floor(math.log2(max(big, 1) / max(small, 1)))))


def _pilot(x_shape, z_shape, width: int, nonnegative: bool) -> nn.Module:
    """Images -> the cut's shape. Linear strided convolutions (as the paper's pilot), then an unpadded one
    that trims the border as the client's unpadded convolutions do (see :func:`geometry_plan`); resized
    when the shapes fit no such plan; a linear map for flat cuts. ReLU at the end for non-negative cuts.
    An area resize to the map size (the earlier pilot) scales the image, which no convolutional client
    can imitate: the critic kept telling the two spaces apart (MSE 0.043 after 630 hijacked steps)."""
    plan = geometry_plan(tuple(z_shape[1:]), tuple(x_shape[1:])) if len(z_shape) == 3 and len(x_shape) == 3 else None
    if plan is not None:  # the client's geometry: halvings, then an unpadded convolution trims the border
        layers, channels = [], x_shape[0]
        for _ in range(plan[0]):
            layers.append(nn.Conv2d(channels, width, 3, stride=2, padding=1))
            channels = width
        trim = tuple(st - s for s, st in zip(z_shape[1:], plan[1]))
        kernel = tuple(t + 1 if t >= 2 else t + 3 for t in trim)
        padding = tuple(0 if t >= 2 else 1 for t in trim)
        layers.append(nn.Conv2d(channels, z_shape[0], kernel, padding=padding))
    elif len(z_shape) == 3:
        layers, channels = [], x_shape[0]
        for _ in range(_halvings(min(x_shape[1:]), min(z_shape[1:]))):
            layers.append(nn.Conv2d(channels, width, 3, stride=2, padding=1))
            channels = width
        layers += [_Resize(z_shape[1:], "area"), nn.Conv2d(channels, z_shape[0], 3, padding=1)]
    else:
        layers = [nn.Flatten(), nn.Linear(math.prod(x_shape), 4 * width), nn.Linear(4 * width, math.prod(z_shape)),
                  nn.Unflatten(1, tuple(z_shape))]
    if nonnegative:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _decoder(z_shape, x_shape, width: int) -> nn.Module:
    """The cut's shape -> images in [0, 1]: upsample-and-convolve stages for maps, an MLP for vectors."""
    plan = geometry_plan(tuple(z_shape[1:]), tuple(x_shape[1:])) if len(z_shape) == 3 and len(x_shape) == 3 else None
    if plan is not None:  # the pilot in reverse: give back the border its unpadded convolution trimmed, then double
        trim = [st - s for s, st in zip(z_shape[1:], plan[1])]
        layers = [nn.ZeroPad2d((trim[1] // 2, trim[1] - trim[1] // 2, trim[0] // 2, trim[0] - trim[0] // 2)),
                  nn.Conv2d(z_shape[0], width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        for _ in range(plan[0]):
            layers += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, x_shape[0], 3, padding=1),
                   nn.Sigmoid()]
    elif len(z_shape) == 3:  # convolutions at the low resolution, transposed convolutions to upsample
        layers = [nn.Conv2d(z_shape[0], width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        for _ in range(_halvings(min(x_shape[1:]), min(z_shape[1:]))):
            layers += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU()]
        layers += [_Resize(x_shape[1:], "bilinear"), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                   nn.Conv2d(width, x_shape[0], 3, padding=1), nn.Sigmoid()]
    else:
        layers = [nn.Flatten(), nn.Linear(math.prod(z_shape), 8 * width), nn.ReLU(), nn.Linear(8 * width, 8 * width),
                  nn.ReLU(), nn.Linear(8 * width, math.prod(x_shape)), nn.Sigmoid(), nn.Unflatten(1, tuple(x_shape))]
    return nn.Sequential(*layers)


def _discriminator(z_shape, width: int) -> nn.Module:
    """The cut's shape -> one score (a WGAN critic: no sigmoid, no batch norm, as the gradient penalty needs)."""
    if len(z_shape) == 3:
        layers, channels, side = [], z_shape[0], min(z_shape[1:])
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        while side > 4:
            layers += [nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            side = (side + 1) // 2
        layers += [nn.Flatten(), nn.LazyLinear(1)]
    else:
        layers = [nn.Flatten(), nn.Linear(math.prod(z_shape), 4 * width), nn.LeakyReLU(0.2),
                  nn.Linear(4 * width, 4 * width), nn.LeakyReLU(0.2), nn.Linear(4 * width, 1)]
    return nn.Sequential(*layers)


@ATTACKS.register("fsha")
class FeatureSpaceHijacking(ReconstructionAttack):
    """FSHA (Pasquini et al., CCS'21): an active server hijacks the client's feature space, then inverts it.

    Args:
        auxiliary: the attacker's own unlabeled images (N, C, H, W) in [0, 1]; default: the last
            ``aux_size`` training images of the audited data set.
        aux_size: how many auxiliary images to take by default.
        pilot_width, decoder_width, discriminator_width: channels (or hidden-unit scale) of f~, f~^-1, D.
        lr_autoencoder: Adam learning rate of pilot and decoder.
        lr_discriminator: Adam learning rate of the discriminator.
        gp_weight: weight of the WGAN gradient penalty (the paper's code uses 500; 10 is WGAN-GP's default
            and measured slightly better here).
        start_step: honest steps before hijacking (0: from the first step, as in the paper).
        critic_steps: autoencoder + critic steps per received batch (WGAN's n_critic; the paper uses 1).
        mask_dead: zero the pilot's units the client has stopped using (dead ReLUs; see the module docstring).
        targets, max_targets, seed, attacker: see :class:`ReconstructionAttack` (the targets are attacked from
            the activations the client releases for them in split inference, phase "eval").
    """

    name = "fsha"
    watches_training_releases = True
    threat_model = ThreatModel(attacker="server", behaviour="active", knows=("auxiliary-data",), target="inputs")
    observes_training = True  # it acts during training: a cached honest model is useless to it
    #: each trial is a whole hijacked training run: keep it to the settings that mattered when measured
    search_space = {"lr_discriminator": [1e-3, 1e-2], "gp_weight": [10.0, 500.0], "critic_steps": [1, 2]}
    tuning_trials = 3

    def __init__(self, *, auxiliary: torch.Tensor | None = None, aux_size: int = 1000, pilot_width: int = 16,
                 decoder_width: int = 16, discriminator_width: int = 16, lr_autoencoder: float = 1e-3,
                 lr_discriminator: float = 1e-2, gp_weight: float = 10.0, start_step: int = 0,
                 critic_steps: int = 1, mask_dead: bool = True,
                 targets: torch.Tensor | None = None, max_targets: int = 32, seed: int = 0,
                 attacker: str | None = None) -> None:
        super().__init__(targets=targets, max_targets=max_targets, phase="eval", seed=seed, attacker=attacker)
        if aux_size < 1 or min(pilot_width, decoder_width, discriminator_width) < 1:
            raise ConfigError(f"{self.name} needs aux_size and network widths >= 1")
        if lr_autoencoder <= 0 or lr_discriminator <= 0 or gp_weight < 0 or start_step < 0 or critic_steps < 1:
            raise ConfigError(f"{self.name} needs learning rates > 0, gp_weight >= 0, start_step >= 0 and critic_steps >= 1")
        if auxiliary is not None and auxiliary.dim() != 4:
            raise ConfigError(f"{self.name} needs auxiliary images (N, C, H, W), got shape {tuple(auxiliary.shape)}")
        self.auxiliary, self.aux_size = auxiliary, aux_size
        self.pilot_width, self.decoder_width, self.discriminator_width = pilot_width, decoder_width, discriminator_width
        self.lr_autoencoder, self.lr_discriminator, self.gp_weight = lr_autoencoder, lr_discriminator, gp_weight
        self.start_step = start_step
        self.critic_steps, self.mask_dead = critic_steps, mask_dead
        self._activity: torch.Tensor | None = None  # running rate at which each received unit is non-zero
        self.pilot = self.decoder = self.discriminator = None
        self.history: list[dict] = []  # per hijacked step: autoencoder loss, critic's Wasserstein estimate
        self._received: torch.Tensor | None = None
        self._nonnegative = True

    # -- applicability ---------------------------------------------------------------------------
    def check_applicable(self, topology, dataset) -> None:
        super().check_applicable(topology, dataset)
        self.draw_auxiliary(dataset)

    def params(self) -> dict:
        return {"aux_size": None if self.auxiliary is None else len(self.auxiliary), "pilot_width": self.pilot_width,
                "decoder_width": self.decoder_width, "discriminator_width": self.discriminator_width,
                "lr_autoencoder": self.lr_autoencoder, "lr_discriminator": self.lr_discriminator,
                "gp_weight": self.gp_weight, "start_step": self.start_step, "critic_steps": self.critic_steps,
                "mask_dead": self.mask_dead}

    # -- the hijack ------------------------------------------------------------------------------
    def _build(self, z: torch.Tensor) -> None:
        if self.auxiliary is None:
            raise ConfigError(f"{self.name} has no auxiliary data: pass auxiliary= or run check_applicable with a data set")
        z_shape, x_shape = tuple(z.shape[1:]), tuple(self.auxiliary.shape[1:])
        self._nonnegative = bool((z >= 0).all())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.pilot = _pilot(x_shape, z_shape, self.pilot_width, self._nonnegative).to(z.device)
            self.decoder = _decoder(z_shape, x_shape, self.decoder_width).to(z.device)
            self.discriminator = _discriminator(z_shape, self.discriminator_width).to(z.device)
            self.discriminator(torch.zeros_like(z[:1]))  # materializes the lazy layer, seeded
        self._aux_device = self.auxiliary.to(z.device)
        self._generator = torch.Generator(device="cpu").manual_seed(self.seed)
        self._ae_opt = torch.optim.Adam([*self.pilot.parameters(), *self.decoder.parameters()], lr=self.lr_autoencoder)
        self._d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr_discriminator, betas=(0.5, 0.9))

    def transform_gradient(self, grad, *, party, step):
        if party != self.attacker or self.topology is None or step < self.start_step:
            return grad
        z_priv = self._received
        if z_priv is None or z_priv.shape != grad.shape:
            raise ConfigError(f"{self.name}: the gradient the server sends back does not match the activation it "
                              f"received (the server must return the gradient at the client's cut)")
        rate = (z_priv != 0).float().mean(0)
        self._activity = rate if self._activity is None else 0.95 * self._activity + 0.05 * rate
        if self.pilot is None:
            self._build(z_priv)
        adversarial = self._hijacking_gradient(z_priv)  # (3), with D as it stands when the activations arrive
        for _ in range(self.critic_steps):
            rec_loss, distance, penalty = self._server_step(z_priv)  # (1) and (2)
        self.history.append({"step": step, "reconstruction_loss": float(rec_loss.detach()),
                             "critic_distance": float(distance.detach()), "gradient_penalty": float(penalty.detach())})
        return adversarial.to(grad.dtype)

    def _pilot_features(self, x):
        """f~(x); for a non-negative cut, units the client has stopped using (always zero lately: dead ReLUs,
        which no gradient can revive) are zeroed in the pilot too, or D would tell the spaces apart by them."""
        z = self.pilot(x)
        if self.mask_dead and self._nonnegative and self._activity is not None:
            z = z * (self._activity > 1e-3).to(z.dtype)
        return z

    def _hijacking_gradient(self, z_priv):
        """(3) d mean D(z) / dz at the received activations: the client should move to where D rates it as pilot space."""
        z = z_priv.detach().clone().requires_grad_(True)
        (adversarial,) = torch.autograd.grad(self.discriminator(z).mean(), z)
        return adversarial

    def _server_step(self, z_priv):
        """(1) one autoencoder step on auxiliary data, (2) one WGAN-GP critic step; returns the losses."""
        with torch.no_grad():
            index = torch.randint(len(self._aux_device), (len(z_priv),), generator=self._generator).to(z_priv.device)
            eps = torch.rand(len(z_priv), *([1] * (z_priv.dim() - 1)), generator=self._generator).to(z_priv.device)
        x_pub = self._aux_device[index]
        self._ae_opt.zero_grad(set_to_none=True)
        z_pub = self._pilot_features(x_pub)
        rec_loss = F.mse_loss(self.decoder(z_pub), x_pub)
        rec_loss.backward()
        self._ae_opt.step()
        # the critic: high on the client's features, low on the pilot's
        self._d_opt.zero_grad(set_to_none=True)
        z_pub = z_pub.detach()
        mixed = (eps * z_priv + (1 - eps) * z_pub).requires_grad_(True)
        (g,) = torch.autograd.grad(self.discriminator(mixed).sum(), mixed, create_graph=True)
        penalty = (g.flatten(1).norm(dim=1) - 1).pow(2).mean()
        distance = self.discriminator(z_priv).mean() - self.discriminator(z_pub).mean()
        (-distance + self.gp_weight * penalty).backward()
        self._d_opt.step()
        return rec_loss, distance, penalty

    # -- result ----------------------------------------------------------------------------------
    def result(self) -> AttackResult:
        """As for every reconstruction attack; if the client refuses split inference on the targets
        (it stopped releasing, e.g. after detecting the hijack), the last training batch received is
        attacked instead and ``originals`` is None (its inputs are unknown to the attack)."""
        try:
            return super().result()
        except TrainingStopped as reason:
            if self._received is None:
                raise
            z = self._received[: self.max_targets]
            reconstructions, info = self.reconstruct(z)
            return AttackResult(attack=self.name, threat_model=self.threat_model.describe(),
                                reconstructions=reconstructions.clamp(0, 1).cpu(), originals=None,
                                info={"client_stopped": str(reason), "attacked": "last training batch received",
                                      "num_targets": int(z.shape[0]), **self.params(), **info})

    def reconstruct(self, z):
        if self.decoder is None:
            raise ConfigError(f"{self.name} never hijacked a training step: it must watch training (pass it to a Trainer)")
        with torch.no_grad():
            self.decoder.eval()
            rec = self.decoder(z.to(next(self.decoder.parameters()).device))
            self.decoder.train()
        last = self.history[-1] if self.history else {}
        return rec, {"hijacked_steps": len(self.history), "pilot_relu": self._nonnegative,
                     "final_reconstruction_loss": last.get("reconstruction_loss"),
                     "final_critic_distance": last.get("critic_distance")}
