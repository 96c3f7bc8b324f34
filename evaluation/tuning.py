"""Tuned attacks: search each attack's own hyperparameters for the strongest result (the worst case).

An audit that runs every attack at its defaults can report a defense as working when only the
attack's settings were off. With tuning on, each audit row searches the attack's declared
``search_space`` (a grid when it is small, Optuna's seeded TPE sampler otherwise) within its
``tuning_trials`` budget and reports the strongest result with the winning settings.

Tuning never reads the evaluation targets: every trial attacks a held-back *validation* set of
images from the training split (disjoint from the attacker's auxiliary images, which are taken
from the end of the training split, and from the test images the final result is scored on), which
the attacker can encode under its own threat model (with the client's weights, or by query access).
Only the winning settings are then run once on the real targets.

Trials reuse the trained model: only attacks that work on the trained model (``observes_training =
False``) are tuned. Attacks that must watch training are reported at their declared settings,
with ``tuning.skipped`` saying why, never retrained per trial.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

from secsplit.errors import ConfigError
from secsplit.specs import parse_spec

#: how many held-back training images each trial is scored on
VALIDATION_IMAGES = 16


@dataclass
class TuningOutcome:
    """What a search found: the winning parameters, its validation score and the trials it took."""

    best_params: dict = field(default_factory=dict)
    best_score: float | None = None
    trials: list[dict] = field(default_factory=list)
    objective: str = ""
    sampler: str = ""
    seconds: float = 0.0
    skipped: str | None = None

    def summary(self) -> dict:
        if self.skipped:
            return {"skipped": self.skipped}
        return {"best_params": self.best_params, "validation_score": self.best_score, "objective": self.objective,
                "trials": len(self.trials), "sampler": self.sampler, "seconds": round(self.seconds, 2)}


def spec_with(spec: str, **params) -> str:
    """``spec`` with ``params`` set (replacing any given), as one ``name:key=value,...`` string."""
    name, given = parse_spec(spec)
    given.update(params)
    return name if not given else name + ":" + ",".join(f"{k}={v}" for k, v in given.items())


def grid_points(space: dict) -> list[dict] | None:
    """Every combination when the space is all choices; None when it has a continuous range."""
    if not all(isinstance(v, (list, tuple)) and not _is_range(v) for v in space.values()):
        return None
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]


def _is_range(value) -> bool:
    return isinstance(value, tuple) and len(value) == 3 and value[2] in ("log", "linear", "int")


def objective_of(scores: dict) -> tuple[str, float] | None:
    """The number a trial maximizes: SSIM for reconstructions, else minus MSE, else label AUC/accuracy."""
    for name, sign in (("ssim", 1.0), ("mse", -1.0), ("leak_auc", 1.0), ("label_accuracy", 1.0)):
        value = scores.get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return name, sign * float(value)
    return None


def tune_attack(spec: str, *, seat_params: dict, topology, dataset, seed: int, trials: int | None = None) -> TuningOutcome:
    """Search ``spec``'s attack's hyperparameters on held-back validation images of a trained ``topology``.

    Args:
        spec: the attack spec as the audit names it; parameters it sets explicitly are not searched.
        seat_params: the seat keyword (``{"attacker": "hop1"}``) or {}.
        topology: the trained configuration (weights are not changed by the attacks tuned here).
        dataset: the run's data set; validation images come from the start of its training split.
        seed: seeds the sampler and each trial's attack.
        trials: the budget (default: the attack's ``tuning_trials``).
    """
    from secsplit.attacks import ATTACKS
    from secsplit.attacks.reconstruction_base import ReconstructionAttack

    from secsplit.attacks.base import canonical_name

    name, fixed = parse_spec(spec)
    name = canonical_name(name)
    cls = ATTACKS.lookup(name)
    space = {k: v for k, v in cls.search_space.items() if k not in fixed}
    if not space:
        return TuningOutcome(skipped="the attack declares no search space")
    probe = ATTACKS.create(name, **ATTACKS.check(name, {**fixed, **seat_params}))
    if probe.observes_training or not isinstance(probe, ReconstructionAttack):
        return TuningOutcome(skipped="the attack watches training; trials would retrain the model, so it runs at its "
                                     "declared settings (label attacks report their per-epoch curve and maximum)")
    budget = trials or cls.tuning_trials
    validation = dataset.x_train[:VALIDATION_IMAGES]
    outcome = TuningOutcome()
    start = time.perf_counter()

    def evaluate(params: dict) -> float:
        attack = ATTACKS.create(name, **ATTACKS.check(name, {**fixed, **params, **seat_params, "seed": seed}))
        attack.check_applicable(topology, dataset)
        attack.targets = validation
        attack.attach(topology)
        scores = attack.result().scores()
        found = objective_of(scores)
        if found is None:
            raise ConfigError(f"{name} returned no score to tune on")
        outcome.objective = found[0]
        outcome.trials.append({"params": params, "score": found[1]})
        return found[1]

    evaluate({})  # the declared settings are always a candidate
    points = grid_points(space)
    if points is not None and len(points) <= budget:
        outcome.sampler = "grid"
        for params in points:
            evaluate(params)
    else:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        outcome.sampler = "tpe"
        study.optimize(lambda trial: evaluate(_suggest(trial, space)), n_trials=max(budget - 1, 1))
    best = max(outcome.trials, key=lambda t: t["score"])
    outcome.best_params, outcome.best_score = best["params"], best["score"]
    outcome.seconds = time.perf_counter() - start
    return outcome


def _suggest(trial, space: dict) -> dict:
    params = {}
    for key, value in space.items():
        if _is_range(value):
            low, high, kind = value
            if kind == "int":
                params[key] = trial.suggest_int(key, int(low), int(high))
            else:
                params[key] = trial.suggest_float(key, float(low), float(high), log=kind == "log")
        else:
            params[key] = trial.suggest_categorical(key, list(value))
    return params
