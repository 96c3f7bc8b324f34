"""The plug-in points defenses and attacks use. Few on purpose: see each hook's docstring."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from secsplit.training import Trainer


class Callback:
    """Base class: every hook is a no-op, override the ones you need.

    Hooks receive the acting ``party`` name, the training ``step`` and the ``phase`` ("train" or
    "eval"), so one callback can act for one party only (a defense at the client, an active attack
    at the server). Passive observation of traffic goes through channel taps, not callbacks.
    """

    def on_setup(self, trainer: Trainer) -> None:
        """Called once when a Trainer attaches the callback: wrap optimizers, add taps, pick sampling.

        ``trainer.topology`` is the configuration; ``trainer.channel`` carries its messages.
        """

    def on_fit_start(self, *, num_samples: int, epochs: int, batch_size: int) -> None:
        """Before the first epoch, when the training-set size is known (DP accounting needs it)."""

    def transform_activation(self, z: torch.Tensor, *, party: str, step: int, phase: str) -> torch.Tensor:
        """Change what the data owner releases at its cut (activation noise); must stay differentiable."""
        return z

    def extra_loss(self, x: torch.Tensor, z: torch.Tensor, *, party: str, step: int) -> torch.Tensor | None:
        """A loss term the data owner adds on its raw input ``x`` and cut output ``z`` (NoPeek)."""
        return None

    def transform_labels(self, y: torch.Tensor, *, party: str, step: int) -> torch.Tensor:
        """Change the labels the label owner trains with, where they enter the loss (label DP)."""
        return y

    def transform_gradient(self, grad: torch.Tensor, *, party: str, step: int) -> torch.Tensor:
        """Change a gradient before ``party`` sends it back (label defenses, active attacks)."""
        return grad

    def on_step_end(self, *, step: int, loss: float) -> None:
        """After every party has stepped its optimizer."""

    def on_epoch_end(self, *, epoch: int, metrics: dict) -> None:
        """After each epoch's evaluation; ``metrics`` is the epoch's history row."""

    def state_dict(self) -> dict:
        """What a training checkpoint must hold for a resumed run to go on as the uninterrupted one
        (generator states, counters, trained auxiliary models): tensors and JSON values. ``{}``: none."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what :meth:`state_dict` returned at the checkpoint (before training resumes)."""


class SeededGenerator:
    """A callback's random source: seeded, made at the first draw on that draw's device, and carried by
    training checkpoints (:meth:`state` / :meth:`restore`), so a resumed run draws on where the
    uninterrupted one would instead of replaying draws already used."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._generator: torch.Generator | None = None
        self._restored: torch.Tensor | None = None

    def on(self, device: torch.device | str) -> torch.Generator:
        device = torch.device(device)
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
            if self._restored is not None:
                self._generator.set_state(self._restored)
                self._restored = None
        return self._generator

    def state(self) -> torch.Tensor | None:
        """The state to checkpoint: None before the first draw (a restored one until it is drawn from)."""
        return self._restored if self._generator is None else self._generator.get_state()

    def restore(self, state: torch.Tensor | None) -> None:
        self._generator, self._restored = None, state


class CallbackList(Callback):
    """Runs several callbacks in order; transforms compose and extra losses add up."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_setup(self, trainer):
        for cb in self.callbacks:
            cb.on_setup(trainer)

    def on_fit_start(self, *, num_samples, epochs, batch_size):
        for cb in self.callbacks:
            cb.on_fit_start(num_samples=num_samples, epochs=epochs, batch_size=batch_size)

    def transform_activation(self, z, *, party, step, phase):
        for cb in self.callbacks:
            z = cb.transform_activation(z, party=party, step=step, phase=phase)
        return z

    def extra_loss(self, x, z, *, party, step):
        terms = [t for cb in self.callbacks if (t := cb.extra_loss(x, z, party=party, step=step)) is not None]
        return torch.stack([t.reshape(()) for t in terms]).sum() if terms else None

    def transform_labels(self, y, *, party, step):
        for cb in self.callbacks:
            y = cb.transform_labels(y, party=party, step=step)
        return y

    def transform_gradient(self, grad, *, party, step):
        for cb in self.callbacks:
            grad = cb.transform_gradient(grad, party=party, step=step)
        return grad

    def on_step_end(self, *, step, loss):
        for cb in self.callbacks:
            cb.on_step_end(step=step, loss=loss)

    def on_epoch_end(self, *, epoch, metrics):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch=epoch, metrics=metrics)
