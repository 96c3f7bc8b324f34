"""The one training loop every topology shares."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from secsplit.callback_state import load_callbacks_state, save_callbacks_state
from secsplit.callbacks import Callback, CallbackList
from secsplit.errors import ConfigError, TrainingStopped
from secsplit.topologies.base import Topology


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; asking for CUDA without one is a clear error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device auto or cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


SAMPLINGS = ("shuffle", "poisson")
TRAINER_STATE = "trainer-state.json"


@dataclass(frozen=True)
class Checkpointing:
    """Save training state every ``every`` steps into ``directory``; with ``resume``, continue from it.

    What is saved: every party's weights and optimizer state (safetensors + JSON per party, named
    by step), the position in the data order, the epoch history so far and the RNG state. The
    trainer's JSON is written last and names the step, so it always points at complete files.
    Callbacks' own state (:meth:`Callback.state_dict`: noise generators, privacy accounting,
    trained decoders) is saved with it, so a resumed run trains the remaining steps exactly as the
    uninterrupted run would have and reports the same epsilon.
    """

    directory: str
    every: int = 50
    resume: bool = False
    keep: int = 2

    def __post_init__(self) -> None:
        if self.every < 1 or self.keep < 1:
            raise ConfigError(f"checkpoint every and keep must be >= 1, got {self.every}, {self.keep}")


def trainer_state_name(step: int) -> str:
    """The trainer state saved at ``step`` (kept beside the parties' states of that step and pruned with them)."""
    return f"trainer-step{step:09d}.json"


def checkpointed_steps(directory) -> list[int]:
    """The steps ``directory`` holds a trainer state of, oldest first (what a party can resume from)."""
    from pathlib import Path

    steps = []
    for path in Path(directory).glob("trainer-step*.json"):
        digits = path.stem.removeprefix("trainer-step")
        if digits.isdigit() and path.name == trainer_state_name(int(digits)):
            steps.append(int(digits))
    return sorted(steps)


def read_trainer_state(directory, step: int | None = None) -> dict | None:
    """The last saved trainer state in ``directory``, or the one saved at ``step`` (None when there is none)."""
    import json
    from pathlib import Path

    path = Path(directory) / (TRAINER_STATE if step is None else trainer_state_name(step))
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise ConfigError(f"cannot resume: {path} is unreadable ({error})") from None
    if not isinstance(state, dict) or "global_step" not in state:
        raise ConfigError(f"cannot resume: {path} is not a secsplit trainer state")
    _check_trainer_state(path, state)
    return state


def _check_trainer_state(path, state: dict) -> None:
    """Every field a resume reads, of the right type and range: an edited file is one line naming the field."""
    def integer(value, low, high=2**62):
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    checks = {
        "global_step": lambda v: integer(v, 0),
        "epoch": lambda v: integer(v, 1),
        "batches_done": lambda v: integer(v, 0),
        "sums": lambda v: isinstance(v, list) and len(v) == 3
                          and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v),
        "history": lambda v: isinstance(v, list) and all(isinstance(row, dict) for row in v),
        "rng": lambda v: isinstance(v, list) and len(v) > 0 and all(integer(x, 0, 255) for x in v),
        "seed": lambda v: integer(v, -(2**63), 2**64 - 1),
        "batch_size": lambda v: integer(v, 1),
        "epochs": lambda v: integer(v, 1),
        "sampling": lambda v: v in SAMPLINGS,
    }
    for name, valid in checks.items():
        if name not in state:
            raise ConfigError(f"cannot resume: {path}: field {name} is missing")
        if not valid(state[name]):
            raise ConfigError(f"cannot resume: {path}: field {name} is invalid ({str(state[name])[:60]})")


@dataclass
class TrainingReport:
    """Per-epoch history plus the final summary (JSON-ready)."""

    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


class Trainer:
    """Runs epochs of a topology's training step over a data set, then evaluates by split inference.

    Args:
        topology: the configuration to train.
        batch_size: samples per step.
        epochs: passes over the training data.
        seed: seeds the data order (the model's initialization is seeded where it is built).
        device: "auto", "cpu" or "cuda".
        callbacks: defenses/attacks plugged into the topology (see :class:`Callback`).
        progress: show a progress bar; default: only when stderr is a terminal.
        sampling: "shuffle" (a seeded permutation cut into batches) or "poisson" (each sample joins
            each batch independently with probability batch_size / n, as DP-SGD's accounting
            assumes; a defense may switch it on in ``on_setup``).
        checkpointing: periodic training checkpoints and resuming (see :class:`Checkpointing`).
    """

    def __init__(
        self,
        topology: Topology,
        *,
        batch_size: int = 64,
        epochs: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        callbacks: Iterable[Callback] = (),
        progress: bool | None = None,
        eval_batch_size: int = 1024,
        sampling: str = "shuffle",
        checkpointing: Checkpointing | None = None,
    ) -> None:
        if batch_size < 1 or epochs < 0 or eval_batch_size < 1:
            raise ConfigError(f"batch_size and eval_batch_size must be >= 1 and epochs >= 0, got {batch_size}, {eval_batch_size}, {epochs}")
        self.topology = topology
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.device = resolve_device(device)
        self.eval_batch_size = eval_batch_size
        if sampling not in SAMPLINGS:
            raise ConfigError(f"unknown sampling {sampling!r}; valid: {', '.join(SAMPLINGS)}")
        self.sampling = sampling
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.callbacks = CallbackList(callbacks)
        self.global_step = 0
        self._saved_steps: list[int] = []  # checkpointed steps still on disk, oldest first
        self.checkpointing = checkpointing
        self._resume: dict | None = None
        if checkpointing is not None and checkpointing.resume:
            self._resume = read_trainer_state(checkpointing.directory)
        topology.to(self.device)
        topology.callbacks = self.callbacks
        self.callbacks.on_setup(self)

    @property
    def channel(self):
        return self.topology.channel

    def resume_from(self, step: int | None) -> None:
        """Resume from the state saved at ``step`` (across processes, the step the parties agreed on); None: from the start."""
        self._resume = None if step is None else read_trainer_state(self.checkpointing.directory, step=step)
        if step is not None and self._resume is None:
            raise ConfigError(f"cannot resume: {self.checkpointing.directory} holds no trainer state of step {step}")

    def batches(self, n: int, epoch: int) -> list[torch.Tensor]:
        """The index batches of one epoch, seeded by (seed, epoch) so runs are repeatable.

        Poisson batches can be empty; :meth:`fit` skips those (no party has anything to send).
        """
        generator = self._epoch_generator(epoch)
        if self.sampling == "poisson":
            rate = min(1.0, self.batch_size / n)
            steps = max(1, round(n / self.batch_size))
            return [torch.nonzero(torch.rand(n, generator=generator) < rate).flatten() for _ in range(steps)]
        order = torch.randperm(n, generator=generator)
        return list(order.split(self.batch_size))

    def _epoch_generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    def _epoch_batches(self, y_train: torch.Tensor, epoch: int) -> Iterable[torch.Tensor]:
        """The topology's own plan for the epoch where it has one (which client trains when), else :meth:`batches`."""
        plan = self.topology.epoch_plan(len(y_train), labels=y_train, epoch=epoch, batch_size=self.batch_size,
                                        generator=self._epoch_generator(epoch))
        if plan is None:
            return self.batches(len(y_train), epoch)
        if self.sampling != "shuffle":
            raise ConfigError(f"topology {self.topology.name!r} plans its own batches (which client trains when), so "
                              f"sampling={self.sampling!r} (set e.g. by dpsgd) cannot apply; use a single-client topology")
        return plan

    def fit(self, dataset) -> TrainingReport:
        """Train for ``epochs`` and evaluate on the test split after each epoch."""
        x_train, y_train = dataset.x_train.to(self.device), dataset.y_train.to(self.device)
        report = TrainingReport()
        if self._resume is not None:  # before on_fit_start: what a callback did once (pretraining) is not redone
            load_callbacks_state(self.checkpointing.directory, self._resume["global_step"], self.callbacks.callbacks)
        self.callbacks.on_fit_start(num_samples=len(x_train), epochs=self.epochs, batch_size=self.batch_size)
        start = time.perf_counter()
        stopped = None
        try:
            self._run_epochs(x_train, y_train, dataset, report, start)
        except TrainingStopped as reason:
            stopped = str(reason)
        if report.history:
            final = report.history[-1]
        elif stopped:  # stopped before the first epoch ended: nothing more is sent, not even for evaluation
            final = {"test_accuracy": None, "test_loss": None}
        else:
            final = {f"test_{k}": v for k, v in self.evaluate(dataset.x_test, dataset.y_test).items()}
        traffic = self.topology.channel.traffic
        clients = self.topology.data_owners
        report.summary = {
            **self.topology.describe(),
            "dataset": dataset.name,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "device": str(self.device),
            "test_accuracy": final["test_accuracy"],
            "test_loss": final["test_loss"],
            "wall_time_s": time.perf_counter() - start,
            "stopped": stopped,
            "traffic": traffic.summary(),
            "flops": self.topology.flops.summary(),
            "client_train_flops": sum(self.topology.flops.totals["train"][c] for c in clients),
            # all data owners together (vertical splits have several)
            "client_bytes_sent": traffic.total(src=set(clients), phase="train"),
            "client_bytes_received": traffic.total(dst=set(clients), phase="train"),
        }
        return report

    def _run_epochs(self, x_train, y_train, dataset, report: TrainingReport, start: float) -> None:
        first_epoch, skip, sums = 1, 0, (0.0, 0, 0)
        if self._resume is not None:
            first_epoch, skip, sums = self._restore(self._resume, report)
        for epoch in range(first_epoch, self.epochs + 1):
            self.topology.train()
            loss_sum, correct, count = sums if epoch == first_epoch else (0.0, 0, 0)
            batches = self._epoch_batches(y_train, epoch)
            if epoch == first_epoch and skip:
                if not isinstance(batches, list):
                    raise ConfigError(f"cannot resume topology {self.topology.name!r} mid-epoch: it plans its own "
                                      f"turns (clients hand weights on between steps), so only epoch-end "
                                      f"checkpoints of it can be resumed")
                batches = batches[skip:]
            # a topology that plans its own turns hands weights on between steps: checkpoint it at epoch ends only
            step_checkpoints = self.checkpointing is not None and isinstance(batches, list)
            bar = tqdm(batches, desc=f"epoch {epoch}/{self.epochs}", disable=not self.progress, leave=False, unit="batch")
            for position, index in enumerate(bar, start=skip if epoch == first_epoch else 0):
                if len(index) == 0:
                    self.callbacks.on_step_end(step=self.global_step, loss=float("nan"))
                    self.global_step += 1
                    continue
                result = self.topology.train_step(x_train[index], y_train[index], step=self.global_step)
                self.callbacks.on_step_end(step=self.global_step, loss=result.loss)
                self.global_step += 1
                loss_sum += result.loss * result.count
                correct += result.correct
                count += result.count
                bar.set_postfix(loss=f"{loss_sum / count:.4f}")
                if step_checkpoints and self.global_step % self.checkpointing.every == 0:
                    self._save(epoch, position + 1, (loss_sum, correct, count), report)
            row = {"epoch": epoch, "train_loss": loss_sum / max(count, 1), "train_accuracy": correct / max(count, 1)}
            if not self.topology.holds_labels:  # e.g. a vertical client without the labels
                row.update(train_loss=None, train_accuracy=None)
            row.update({f"test_{k}": v for k, v in self.evaluate(dataset.x_test, dataset.y_test).items()})
            row["wall_time_s"] = time.perf_counter() - start
            report.history.append(row)
            try:  # the callbacks' epoch-end bookkeeping belongs to the epoch-end state
                self.callbacks.on_epoch_end(epoch=epoch, metrics=row)
            except TrainingStopped:
                if self.checkpointing is not None:
                    self._save(epoch + 1, 0, (0.0, 0, 0), report)
                raise
            if self.checkpointing is not None:  # an epoch-end state: resuming starts the next epoch
                self._save(epoch + 1, 0, (0.0, 0, 0), report)

    def _save(self, epoch: int, batches_done: int, sums: tuple, report: TrainingReport) -> None:
        """Parties' states first (named by step), then the trainer's JSON that points at them."""
        import json
        from pathlib import Path

        from secsplit.atomic import atomic_write

        directory = Path(self.checkpointing.directory)
        directory.mkdir(parents=True, exist_ok=True)
        step = self.global_step
        self.topology.save_training_state(directory, step)
        save_callbacks_state(directory, step, self.callbacks.callbacks)
        state = {"global_step": step, "epoch": epoch, "batches_done": batches_done, "sums": list(sums),
                 "history": report.history, "seed": self.seed, "batch_size": self.batch_size, "epochs": self.epochs,
                 "sampling": self.sampling, "rng": torch.get_rng_state().tolist(),
                 "topology": self.topology.run_id}
        atomic_write(directory / trainer_state_name(step), json.dumps(state).encode())
        atomic_write(directory / TRAINER_STATE, json.dumps(state).encode())
        saved = self._saved_steps
        if step not in saved:
            saved.append(step)
        del saved[: -self.checkpointing.keep]
        self.topology.prune_training_states(directory, keep_steps=list(saved))

    def _restore(self, state: dict, report: TrainingReport) -> tuple[int, int, tuple]:
        for key in ("seed", "batch_size", "sampling"):
            if state.get(key) != getattr(self, key):
                raise ConfigError(f"cannot resume: the checkpoint was trained with {key}={state.get(key)!r}, "
                                  f"this run has {key}={getattr(self, key)!r}")
        self.topology.load_training_state(self.checkpointing.directory, state["global_step"])
        try:
            torch.set_rng_state(torch.tensor(state["rng"], dtype=torch.uint8))
        except RuntimeError:
            raise ConfigError(f"cannot resume: {self.checkpointing.directory}/{TRAINER_STATE}: field rng is not "
                              f"a random generator state") from None
        self.global_step = state["global_step"]
        self._saved_steps = [self.global_step]
        report.history.extend(state["history"])
        loss_sum, correct, count = state["sums"]
        return state["epoch"], state["batches_done"], (float(loss_sum), int(correct), int(count))

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """Accuracy and loss of split inference on (x, y); the topology's predict routes the traffic."""
        self.topology.eval()
        x, y = x.to(self.device), y.to(self.device)
        loss_sum, correct = 0.0, 0
        # one split inference per batch: the logits and targets accuracy/loss score (multi-task: the
        # primary task's) plus per-task batch means (none for single-task topologies), reported as they are
        task_sums = {}
        for start in range(0, len(x), self.eval_batch_size):
            xb, yb = x[start : start + self.eval_batch_size], y[start : start + self.eval_batch_size]
            logits, yb, metrics = self.topology.task_metrics(xb, yb, step=self.global_step)
            for key, value in metrics.items():
                task_sums[key] = task_sums.get(key, 0.0) + value * len(xb)
            if logits is None:  # this party contributes to inference but is not told the answer
                continue
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
        self.topology.train()
        n = max(len(x), 1)
        if not self.topology.holds_labels:
            return {"accuracy": None, "loss": None}
        return {"accuracy": correct / n, "loss": loss_sum / n, **{k: v / n for k, v in task_sums.items()}}
