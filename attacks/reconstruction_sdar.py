"""SDAR (Zhu, Luo, Wu, Jiang, Xiao and Ooi, "Passive Inference Attacks on Split Learning via Adversarial
Regularization", NDSS 2025, arXiv 2310.10483): an honest-but-curious server learns a *decodable
simulator* of the client's segment from labeled auxiliary data, then decodes what the client releases.

The server follows the protocol; beside each training step it trains, on a batch of its own labeled
auxiliary images (x_a, y_a):

1. the simulator f~ (the client segment's architecture, freshly initialized: no client weight) so
   that its own segment g, as it stands, classifies f~(x_a) correctly: CE(g(f~(x_a)), y_a) (in
   U-shape, where the labels and the last layer stay with the client, through a simulated tail h~
   too: CE(h~(g(f~(x_a))), y_a)), plus ``simulator_adv_weight`` x the non-saturating GAN loss of a
   discriminator D_f that tells f(x_priv) (the activations just received) from f~(x_a), both
   conditioned on a label, plus ``simulator_mmd_weight`` x MMD^2(f~(x_a), f(x_priv)) and, where the
   server received the batch's labels (vanilla), ``class_mmd_weight`` x the same within each label,
   x_a drawn with the received labels (:func:`class_mmd2`; neither term is in the paper);
2. D_f on (f(x_priv), label) as real and (f~(x_a), y_a) as fake;
3. a label-conditioned decoder f~^-1 on (f~(x_a), y_a) -> x_a: the inverse network's loss (MSE +
   ``ssim_weight`` x (1 - SSIM)) plus ``decoder_adv_weight`` x the GAN loss of a second discriminator
   D_x on its decodings of the *received* activations, f~^-1(f(x_priv), label) (the authors' code: the
   decoder is pushed to decode the client's real features, not only the simulator's, into plausible
   images of their label);
4. D_x on real auxiliary images against those decodings.

Auxiliary labels may be noised (``flip_rate``: a share redrawn uniformly, as the authors' code does).
The label of a received batch is the one the server received for its loss (vanilla, as in the
authors' code, where the server holds the training labels), else the server's own guess: argmax
h~(g(f(x))) in U-shape, which is also SDAR's label inference there (``label_accuracy``). Targets are
held-out images the client runs split inference on; they carry no label, so the decoder gets the
server's guess (argmax g(f(x)) in vanilla) and reconstructs f~^-1(f(x), guess).

After training, when the client is final, the simulator takes ``align_steps`` more updates (task
loss and MMD terms, batches of ``align_batch``) against the last ``bank_size`` activations it
received, and the decoder is trained ``final_epochs`` more passes on the final simulator's features
of the auxiliary set exactly as the inverse network trains its own (:func:`~secsplit.attacks.decoders.fit_decoder`:
one-cycle Adam, best epoch on a held-out tenth, here warm-started from the online decoder). Decoder
architecture and loss are the inverse network's (:class:`~secsplit.attacks.decoders.ImageDecoder`, one
builder for both), so the two attacks differ only in whose features the decoder learns from.

Weights and learning rates as in the authors' code (and SecretFlow's port of it: simulator GAN weight
0.02, decoder GAN weight 1e-5; Adam at 1e-3 for the simulator, 5e-4 for the decoder, 4e-5 for the
discriminators; binary cross-entropy discriminators conditioned on the label). The slow
discriminators matter: with every network at 1e-3, D_f separated the two sides outright (loss
~0.001), its gradient swamped the simulator's task loss (still ~1.0 after 3 MNIST epochs) and the
SSIM at pool2 fell from 0.80 to 0.53 on the same trained model (benchmarks/README.md). Differences,
on purpose: small MLP discriminators; the MMD term (measured on MNIST LeNet, seed 0: without it the
simulator's relu3 features sit 8.8 spreads from the client's, and the decoder that reads 0.76 SSIM
from the simulator's features reads 0.26 from the client's; with weight 10: 0.23 and 0.66;
docs/attacks.md); the inverse network's decoder, loss and final passes.

Threat model: honest-but-curious server; knows the client segment's architecture (not its
weights), labeled auxiliary data from the same distribution ("auxiliary-data" for the images,
"few-labels" for their labels). It reads its own segment and what it receives; never the client's
weights or the private inputs.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from secsplit.attacks.base import ATTACKS, AttackResult, NotApplicable, ThreatModel, in_batches
from secsplit.attacks.decoders import ImageDecoder, fit_decoder, held_out_size, image_loss
from secsplit.attacks.reconstruction_base import LearnsFromReleases, reset_parameters
from secsplit.attacks.reconstruction_fora import mmd2
from secsplit.attacks.reconstruction_inverse import _shifted
from torch import nn

from secsplit.errors import ConfigError


#: the final decoder passes' batch (the inverse network's default)
FINAL_BATCH_SIZE = 32


def class_mmd2(a: torch.Tensor, y_a: torch.Tensor, b: torch.Tensor, y_b: torch.Tensor,
               bandwidths=(0.5, 1.0, 2.0, 4.0)) -> torch.Tensor:
    """Squared MMD of two labeled batches under the kernel k(z, z') [y = y']: the Gaussian kernels of
    :func:`~secsplit.attacks.reconstruction_fora.mmd2` (median-scaled) times label equality, so the features
    of class c are compared only with features of class c (zero iff the class-conditional distributions
    and the label shares agree)."""
    a, b = a.flatten(1), b.flatten(1)
    joint, labels = torch.cat([a, b]), torch.cat([y_a, y_b])
    d2 = torch.cdist(joint, joint).pow(2)
    scale = d2.detach()[d2.detach() > 0].median().clamp_min(1e-12)
    k = sum(torch.exp(-d2 / (2 * w * w * scale)) for w in bandwidths) * (labels[:, None] == labels[None, :])
    n = len(a)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def with_label(z: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """``z`` with its label appended, one-hot: as ``k`` constant channels for maps, ``k`` features for vectors."""
    onehot = F.one_hot(y, k).to(z.dtype)
    if z.dim() == 4:
        return torch.cat([z, onehot[:, :, None, None].expand(-1, -1, *z.shape[2:])], 1)
    return torch.cat([z.flatten(1), onehot], 1)


class _Conditioned(nn.Module):
    """``inner`` applied to its input with the label appended (:func:`with_label`; ``flat``: the input flattened first)."""

    def __init__(self, inner: nn.Module, k: int, flat: bool = False) -> None:
        super().__init__()
        self.inner, self.k, self.flat = inner, k, flat

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner(with_label(z.flatten(1) if self.flat else z, y, self.k))


def _critic(size: int, width: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(size, width), nn.LeakyReLU(0.2), nn.Linear(width, width),
                         nn.LeakyReLU(0.2), nn.Linear(width, 1))


@ATTACKS.register("sdar")
class SDAR(LearnsFromReleases):
    """SDAR (Zhu et al., NDSS'25): simulator + decoder with adversarial regularization, passive server.

    Args:
        auxiliary, auxiliary_labels: the attacker's own labeled images (N, C, H, W) in [0, 1] and their
            labels; default: the last ``aux_size`` training images of the audited data set and their labels.
        aux_size: how many auxiliary images to take by default.
        lr: Adam learning rate of the simulator (and U-shape tail).
        decoder_lr: the decoder's while training runs (the authors' code: half the simulator's).
        critic_lr: the two discriminators' (the authors' code: 4e-5, 25x below the simulator's, so that the
            discriminators do not overpower the networks they regularize).
        simulator_adv_weight, decoder_adv_weight: weights of the two GAN losses (paper's code: 0.02, 1e-5).
        simulator_mmd_weight: weight of the MMD^2 between the simulator's features of the auxiliary batch and
            the received batch, beside the GAN loss (not in the paper; 0 = the paper's simulator). Measured
            on MNIST LeNet: without it the simulator's features drift to another scale and basis than the
            client's (docs/attacks.md).
        ssim_weight: weight of (1 - SSIM) beside the MSE in the decoder's loss (the inverse network's loss).
        flip_rate: share of auxiliary labels redrawn uniformly at random per batch (the authors' label
            noise against an overconfident simulator; 0 = off).
        critic_width: hidden width of the two discriminators.
        final_epochs, final_lr: after training, the decoder's passes over the auxiliary set on the final
            simulator's features (one-cycle Adam up to ``final_lr``, the epoch best on a held-out tenth kept,
            as the inverse network trains its own); 0 = the paper's schedule (the online decoder as is).
        steps_per_batch: simulator updates per received training batch (each on a fresh auxiliary batch).
        decoder_steps_per_batch: decoder (and D_x) updates per received batch, at most ``steps_per_batch``
            (the paper: one of each per batch; the decoder costs ~10x the simulator's update on MNIST LeNet,
            and the final passes train it on the final simulator anyway).
        online_decoder: train the decoder (and D_x) beside the simulator during training, as the paper does;
            False trains it only after training (the final passes, from scratch): a tenth of the CPU time.
        class_mmd_weight: weight of the class-conditional MMD^2 (:func:`class_mmd2`: features compared only
            within a label) between the auxiliary batch, drawn with the received batch's labels, and the received
            batch (not in the paper): the marginal MMD lets the simulator swap what classes look like, this one
            does not. Only on the labels the server received (vanilla); in U-shape, with guessed labels only, it is off.
        final_shift: the final passes train on the auxiliary images shifted by up to this many pixels (fresh
            shifts each epoch, through the simulator), as the inverse network's ``shift`` does with its queries
            (0 = as they are).
        bank_size, align_steps, align_batch: keep the last ``bank_size`` received activations (and their labels)
            and, after training, refine the simulator ``align_steps`` times against them in batches of
            ``align_batch`` (task loss + the MMD terms), before the final decoder passes: the online updates
            chase a moving client with small batches, the targets are released by the final one (0, 0 = off).
        targets, max_targets, seed: see :class:`ReconstructionAttack`.
    """

    #: its seat is fixed (the server); its simulator is the client segment's
    seat_option = None

    name = "sdar"
    threat_model = ThreatModel(attacker="server", behaviour="honest-but-curious",
                               knows=("client-architecture", "auxiliary-data", "few-labels"), target="inputs")
    #: the attack's own hyperparameters for tuning (see Attack.search_space)
    search_space: ClassVar[dict] = {"simulator_adv_weight": [0.0, 0.02, 0.1], "simulator_mmd_weight": [0.0, 10.0],
                                     "class_mmd_weight": [0.0, 10.0, 50.0], "align_steps": [0, 300],
                                     "final_epochs": [0, 10],
                                     "steps_per_batch": [1, 4], "lr": [1e-3, 3e-4]}

    def __init__(self, *, auxiliary: torch.Tensor | None = None, auxiliary_labels: torch.Tensor | None = None,
                 aux_size: int = 1000, lr: float = 1e-3, decoder_lr: float = 5e-4, critic_lr: float = 4e-5,
                 simulator_adv_weight: float = 0.02, decoder_adv_weight: float = 1e-5,
                 simulator_mmd_weight: float = 10.0, ssim_weight: float = 0.1,
                 flip_rate: float = 0.0, critic_width: int = 128, final_epochs: int = 10, final_lr: float = 1e-2,
                 steps_per_batch: int = 4, decoder_steps_per_batch: int = 1, online_decoder: bool = True,
                 class_mmd_weight: float = 50.0, final_shift: int = 0, bank_size: int = 4000, align_steps: int = 300, align_batch: int = 512,
                 targets: torch.Tensor | None = None, max_targets: int = 32, seed: int = 0) -> None:
        super().__init__(targets=targets, max_targets=max_targets, phase="eval", seed=seed, steps_per_batch=steps_per_batch)
        if aux_size < 2 or min(lr, decoder_lr, critic_lr, final_lr) <= 0 or critic_width < 1 or final_epochs < 0 \
                or steps_per_batch < 1:
            raise ConfigError(f"{self.name} needs aux_size >= 2, critic_width, steps_per_batch >= 1, lr, decoder_lr, "
                              "critic_lr, final_lr > 0 and final_epochs >= 0")
        if not 0 <= flip_rate < 1:
            raise ConfigError(f"{self.name} needs 0 <= flip_rate < 1, got {flip_rate}")
        if min(simulator_adv_weight, decoder_adv_weight, simulator_mmd_weight, class_mmd_weight, ssim_weight) < 0:
            raise ConfigError(f"{self.name} needs non-negative adversarial, MMD and SSIM weights")
        if bank_size < 0 or align_steps < 0 or align_batch < 2:
            raise ConfigError(f"{self.name} needs bank_size >= 0, align_steps >= 0 and align_batch >= 2, got "
                              f"{bank_size}, {align_steps} and {align_batch}")
        if align_steps and not bank_size:
            raise ConfigError(f"{self.name} refines its simulator against a bank of releases: align_steps={align_steps} "
                              "needs bank_size >= 1")
        if not 1 <= decoder_steps_per_batch <= steps_per_batch:
            raise ConfigError(f"{self.name} needs 1 <= decoder_steps_per_batch <= steps_per_batch, got "
                              f"{decoder_steps_per_batch} and {steps_per_batch}")
        if not online_decoder and not final_epochs:
            raise ConfigError(f"{self.name} with online_decoder=False trains its decoder only in the final passes: "
                              "it needs final_epochs >= 1")
        if (auxiliary is None) != (auxiliary_labels is None):
            raise ConfigError(f"{self.name} needs auxiliary images and their labels together")
        self.auxiliary, self.auxiliary_labels, self.aux_size = auxiliary, auxiliary_labels, aux_size
        self.lr, self.decoder_lr, self.critic_lr, self.final_lr = lr, decoder_lr, critic_lr, final_lr
        self.critic_width, self.final_epochs, self.flip_rate = critic_width, final_epochs, flip_rate
        self.simulator_adv_weight, self.decoder_adv_weight = simulator_adv_weight, decoder_adv_weight
        self.simulator_mmd_weight, self.ssim_weight = simulator_mmd_weight, ssim_weight
        self.online_decoder, self.decoder_steps_per_batch = bool(online_decoder), decoder_steps_per_batch
        self.class_mmd_weight, self.bank_size, self.align_steps, self.align_batch = \
            class_mmd_weight, bank_size, align_steps, align_batch
        if final_shift < 0:
            raise ConfigError(f"{self.name} needs final_shift >= 0, got {final_shift}")
        self.final_shift = final_shift
        self._bank: list[tuple[torch.Tensor, torch.Tensor, bool]] = []  # (released batch, labels, true labels?)
        self._batch_seen: tuple[torch.Tensor, torch.Tensor, bool] | None = None
        self.align_log: dict | None = None
        self._decoder_steps_left = 0
        self.dataset = None
        self.simulator = self.tail = self.decoder = None
        self.last_labels: torch.Tensor | None = None
        self._received_labels: torch.Tensor | None = None
        self.final_log: dict | None = None
        self.true_label_steps = 0

    def params(self) -> dict:
        return {"aux_size": None if self.auxiliary is None else len(self.auxiliary), "lr": self.lr,
                "decoder_lr": self.decoder_lr, "critic_lr": self.critic_lr, "flip_rate": self.flip_rate,
                "simulator_adv_weight": self.simulator_adv_weight, "decoder_adv_weight": self.decoder_adv_weight,
                "simulator_mmd_weight": self.simulator_mmd_weight, "ssim_weight": self.ssim_weight, "critic_width": self.critic_width, "final_epochs": self.final_epochs,
                "final_lr": self.final_lr, "steps_per_batch": self.steps_per_batch,
                "decoder_steps_per_batch": self.decoder_steps_per_batch,
                "online_decoder": self.online_decoder, "class_mmd_weight": self.class_mmd_weight, "final_shift": self.final_shift,
                "bank_size": self.bank_size, "align_steps": self.align_steps, "align_batch": self.align_batch}

    # -- applicability ---------------------------------------------------------------------------
    def check_applicable(self, topology, dataset) -> None:
        super().check_applicable(topology, dataset)
        owners = topology.owners
        if owners[-1] not in ("server", topology.data_owner) or len(owners) > 3:
            raise NotApplicable(f"{self.name} simulates the client's segment through the server's own: it needs "
                                f"vanilla or U-shape, not {getattr(topology, 'name', 'this chain')} ({' -> '.join(owners)})")
        self.dataset = dataset
        if self.auxiliary is None:
            if dataset is None:
                raise NotApplicable(f"{self.name} needs labeled auxiliary images (auxiliary=, auxiliary_labels=) or a data set")
            self.auxiliary = dataset.x_train[-self.aux_size:]
            self.auxiliary_labels = dataset.y_train[-self.aux_size:]

    @property
    def ushape(self) -> bool:
        return len(self.topology.owners) == 3

    # -- what the server receives ----------------------------------------------------------------
    def _observe(self, message) -> None:
        super()._observe(message)
        # vanilla: the batch's labels come to the server for its loss (the authors condition on them)
        if message.kind == "labels" and message.dst == self.attacker and message.phase == "train":
            self._received_labels = message.tensor.detach()

    def on_step_end(self, *, step, loss) -> None:
        self._decoder_steps_left = self.decoder_steps_per_batch
        super().on_step_end(step=step, loss=loss)
        self._received_labels = None
        if self._batch_seen is not None and self.align_steps:
            self._bank.append(self._batch_seen)
            while sum(len(z) for z, _, _ in self._bank) - len(self._bank[0][0]) >= self.bank_size:
                self._bank.pop(0)  # the oldest releases go first: the bank follows the client as it trains
        self._batch_seen = None

    # -- the attack networks ---------------------------------------------------------------------
    def _build(self, z: torch.Tensor) -> None:
        if self.auxiliary is None:
            raise ConfigError(f"{self.name} has no auxiliary data: pass auxiliary= or run check_applicable with a data set")
        device = z.device
        k = int(self.auxiliary_labels.max()) + 1 if self.dataset is None else self.dataset.num_classes
        self.k = k
        z_shape, x_shape = tuple(z.shape[1:]), tuple(self.auxiliary.shape[1:])
        decoder_in = (z_shape[0] + k, *z_shape[1:]) if len(z_shape) == 3 else (math.prod(z_shape) + k,)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            # the client segment's architecture, every weight re-drawn (what "client-architecture" grants)
            self.simulator = reset_parameters(copy.deepcopy(self.topology.segments[0]), self.seed).to(device).train()
            if self.ushape:
                self.tail = reset_parameters(copy.deepcopy(self.topology.segments[2]), self.seed + 1).to(device).train()
            # the inverse network's decoder (one builder for both), fed the activation with its label appended
            self.decoder = _Conditioned(ImageDecoder(decoder_in, x_shape), k).to(device)
            self.critic_z = _Conditioned(_critic(math.prod(z_shape) + k, self.critic_width), k, flat=True).to(device)
            self.critic_x = _Conditioned(_critic(math.prod(x_shape) + k, self.critic_width), k, flat=True).to(device)
        sim_params = [*self.simulator.parameters(), *(self.tail.parameters() if self.tail is not None else [])]
        for p in sim_params:
            p.requires_grad_(True)
        self._sim_params = sim_params
        self._opt_sim = torch.optim.Adam(sim_params, lr=self.lr)
        self._opt_dec = torch.optim.Adam(self.decoder.parameters(), lr=self.decoder_lr)
        self._opt_cz = torch.optim.Adam(self.critic_z.parameters(), lr=self.critic_lr)
        self._opt_cx = torch.optim.Adam(self.critic_x.parameters(), lr=self.critic_lr)
        self._aux = self.auxiliary.to(device)
        self._aux_y = self.auxiliary_labels.to(device)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._aux_by_class = [torch.nonzero(self.auxiliary_labels.cpu() == c).flatten() for c in range(k)]

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        """The server's own segment on ``z`` (then the simulated tail in U-shape), without touching its gradients."""
        h = self.topology.segments[1](z)
        return self.tail(h) if self.tail is not None else h

    @torch.no_grad()
    def guess_labels(self, z: torch.Tensor) -> torch.Tensor:
        """The server's label guess for released activations ``z``: its segment's (vanilla) or the simulated tail's argmax."""
        return self._logits(z).argmax(1)

    def _private_labels(self, z_priv: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The labels of the received batch and whether they are true: the ones the server received for its
        loss (True), else its own guess (False)."""
        y = self._received_labels
        if y is not None and len(y) == len(z_priv):
            self.true_label_steps += 1
            return y.to(z_priv.device), True
        return self.guess_labels(z_priv), False

    def _flip(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` with a ``flip_rate`` share of labels redrawn uniformly (the authors' label noise)."""
        if not self.flip_rate:
            return y
        redraw = torch.rand(len(y), generator=self._generator) < self.flip_rate
        random = torch.randint(self.k, (len(y),), generator=self._generator)
        return torch.where(redraw.to(y.device), random.to(y.device), y)

    def _aux_index(self, y: torch.Tensor, known: bool) -> torch.Tensor:
        """Indices of ``len(y)`` auxiliary images: with the labels ``y`` (one random image of each row's class)
        when the class-conditional MMD applies (on, and ``y`` the true labels: ``known``), so that both batches
        have the same label shares; else uniform."""
        uniform = torch.randint(len(self._aux), (len(y),), generator=self._generator)
        if not (self.class_mmd_weight and known):
            return uniform.to(self._aux.device)
        index = uniform.clone()
        y = y.cpu()
        for c in y.unique():
            rows, pool = torch.nonzero(y == c).flatten(), self._aux_by_class[int(c)]
            if len(pool):  # a class missing from the auxiliary set keeps its uniform draws
                index[rows] = pool[torch.randint(len(pool), (len(rows),), generator=self._generator)]
        return index.to(self._aux.device)

    def _alignment(self, z_a: torch.Tensor, y_a: torch.Tensor, z_priv: torch.Tensor, y_priv: torch.Tensor,
                   known: bool) -> torch.Tensor:
        """The weighted MMD terms between the simulator's features ``z_a`` and the released ``z_priv``; the
        class-conditional one only on true labels (``known``): conditioned on the server's own guesses (U-shape)
        it feeds them back into the simulator and the tail, and the guesses collapse (measured on digits)."""
        distance = self.simulator_mmd_weight * mmd2(z_a, z_priv) if self.simulator_mmd_weight else torch.zeros((), device=z_a.device)
        if self.class_mmd_weight and known:
            distance = distance + self.class_mmd_weight * class_mmd2(z_a, y_a, z_priv, y_priv)
        return distance

    def _update(self, z_priv: torch.Tensor) -> dict:
        y_priv, known = self._private_labels(z_priv)
        self._batch_seen = (z_priv, y_priv, known)
        index = self._aux_index(y_priv, known)
        x_a, y_a = self._aux[index], self._flip(self._aux_y[index])
        bce = F.binary_cross_entropy_with_logits
        with torch.enable_grad():
            # (1) the simulator: the server's segment must classify its outputs, D_f must take them for real ones,
            # and (MMD) they must be distributed as the received ones
            z_a = self.simulator(x_a)
            task = F.cross_entropy(self._logits(z_a), y_a)
            fake = self.critic_z(z_a, y_a)
            sim_loss = task + self.simulator_adv_weight * bce(fake, torch.ones_like(fake))
            distance = self._alignment(z_a, self._aux_y[index], z_priv, y_priv, known)
            sim_loss = sim_loss + distance
            grads = torch.autograd.grad(sim_loss, self._sim_params, allow_unused=True)
            self._opt_sim.zero_grad(set_to_none=True)
            for p, g in zip(self._sim_params, grads):
                p.grad = g
            self._opt_sim.step()
            # (2) D_f: received activations are real, simulated ones fake
            self._opt_cz.zero_grad(set_to_none=True)
            real, fake = self.critic_z(z_priv, y_priv), self.critic_z(z_a.detach(), y_a)
            critic_loss = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
            critic_loss.backward()
            self._opt_cz.step()
            log = {"task_loss": float(task.detach()), "critic_loss": float(critic_loss.detach()),
                   "mmd2": float(distance.detach())}
            if not self.online_decoder or self._decoder_steps_left <= 0:
                return log
            self._decoder_steps_left -= 1
            # (3) the decoder learns the (updated) simulator's inverse on auxiliary images, while its decodings
            # of the *received* activations must pass D_x as real images of their label (the authors' code)
            with torch.no_grad():
                z_a = self.simulator(x_a)
            self.decoder.train()
            x_hat = self.decoder(z_a, y_a)
            x_priv = self.decoder(z_priv, y_priv)
            fake_x = self.critic_x(x_priv, y_priv)
            dec_loss = image_loss(x_hat, x_a, self.ssim_weight) + self.decoder_adv_weight * bce(fake_x, torch.ones_like(fake_x))
            self._opt_dec.zero_grad(set_to_none=True)
            dec_loss.backward()
            self._opt_dec.step()
            # (4) D_x: auxiliary images are real, decoded received activations fake
            self._opt_cx.zero_grad(set_to_none=True)
            real_x, fake_x = self.critic_x(x_a, y_a), self.critic_x(x_priv.detach(), y_priv)
            (bce(real_x, torch.ones_like(real_x)) + bce(fake_x, torch.zeros_like(fake_x))).backward()
            self._opt_cx.step()
        return {**log, "decoder_mse": float(F.mse_loss(x_hat.detach(), x_a))}

    @torch.no_grad()
    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        """The simulator's features of images ``x`` (eval mode, in batches)."""
        self.simulator.eval()
        try:
            return in_batches(self.simulator, x)
        finally:
            self.simulator.train()

    def _align_to_bank(self) -> None:
        """After training, ``align_steps`` simulator updates against the banked releases (the last ``bank_size``
        received activations, from the client as it ended training) with batches of ``align_batch``: the task
        loss through the server's final segment plus the MMD terms, larger batches than the online updates'
        and a client that no longer moves."""
        if not self.align_steps or not self._bank:
            return
        z_bank = torch.cat([z for z, _, _ in self._bank])[-self.bank_size:]
        y_bank = torch.cat([y for _, y, _ in self._bank])[-self.bank_size:]
        known = all(k for _, _, k in self._bank)
        n = min(self.align_batch, len(z_bank))
        first = last = None
        with torch.enable_grad():
            for _ in range(self.align_steps):
                pick = torch.randperm(len(z_bank), generator=self._generator)[:n].to(z_bank.device)
                z_priv, y_priv = z_bank[pick], y_bank[pick]
                index = self._aux_index(y_priv, known)
                x_a, y_a = self._aux[index], self._aux_y[index]
                z_a = self.simulator(x_a)
                task = F.cross_entropy(self._logits(z_a), self._flip(y_a))
                distance = self._alignment(z_a, y_a, z_priv, y_priv, known)
                # the simulator only: the U-shape tail (the label guesses) stays as training left it
                params = list(self.simulator.parameters())
                grads = torch.autograd.grad(task + distance, params, allow_unused=True)
                self._opt_sim.zero_grad(set_to_none=True)
                for p, g in zip(params, grads):
                    p.grad = g
                self._opt_sim.step()
                last = {"task_loss": float(task.detach()), "distance": float(distance.detach())}
                first = first or last
        self.align_log = {"bank": len(z_bank), "first": first, "last": last}

    def _final_decoder_passes(self) -> None:
        """The inverse network's training of its decoder, on the final simulator's features of the auxiliary set,
        warm-started from the online decoder (which is kept if no epoch beats it on the held-out tenth)."""
        self.final_epochs_done = True
        if not self.final_epochs:
            return
        gen = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(self._aux), generator=gen).to(self._aux.device)
        held = held_out_size(len(order), FINAL_BATCH_SIZE)
        val, train = order[:held], order[held:]
        z = with_label(self.simulate(self._aux), self._aux_y, self.k)

        def shifted_pairs() -> tuple[torch.Tensor, torch.Tensor]:
            x_epoch = _shifted(self._aux[train], self.final_shift, gen)
            return with_label(self.simulate(x_epoch), self._aux_y[train], self.k), x_epoch

        with torch.enable_grad():
            self.final_log = fit_decoder(self.decoder.inner, z[train], self._aux[train], z[val], self._aux[val],
                                         epochs=self.final_epochs, lr=self.final_lr, batch_size=FINAL_BATCH_SIZE,
                                         ssim_weight=self.ssim_weight, generator=gen, start_is_candidate=self.online_decoder,
                                         refresh=shifted_pairs if self.final_shift else None)

    # -- result ----------------------------------------------------------------------------------
    def reconstruct(self, z):
        if self.decoder is None:
            raise ConfigError(f"{self.name} never saw a training step: it must watch training (pass it to a Trainer)")
        if not getattr(self, "final_epochs_done", False):
            self._align_to_bank()
            self._final_decoder_passes()
        labels = self.guess_labels(z)
        self.last_labels = labels.cpu()
        with torch.no_grad():
            rec = self.decoder.eval()(z, labels)
        last = self.history[-1] if self.history else {}
        decoded = [row["decoder_mse"] for row in self.history if "decoder_mse" in row]
        return rec, {"sdar_steps": len(self.history), "final_task_loss": last.get("task_loss"),
                     "final_decoder_mse": decoded[-1] if decoded else None, "ushape": self.ushape,
                     "true_label_steps": self.true_label_steps,
                     "final_best_epoch": None if self.final_log is None else self.final_log["best_epoch"]}

    def result(self) -> AttackResult:
        """Reconstructions of the targets; in U-shape also the inferred labels of the targets (``label_accuracy``)."""
        out = super().result()
        if self.ushape and self.targets is not None and self.last_labels is not None:
            truth = self._target_labels()
            if truth is not None:
                out.label_scores = F.one_hot(self.last_labels, self.k).float()
                out.true_labels = truth
        return out

    def _target_labels(self) -> torch.Tensor | None:
        """The targets' true labels, for scoring only: looked up in the data set (None when they are not in it)."""
        if self.dataset is None:
            return None
        for x, y in ((self.dataset.x_test, self.dataset.y_test), (self.dataset.x_train, self.dataset.y_train)):
            flat = x.flatten(1)
            found = []
            for t in self.targets.flatten(1).to(flat.device):
                rows = torch.nonzero((flat == t).all(1)).flatten()
                if not len(rows):
                    break
                found.append(int(y[rows[0]]))
            if len(found) == len(self.targets):
                return torch.as_tensor(found, dtype=torch.int64)
        return None
