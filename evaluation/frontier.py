"""The defense frontier: for one configuration, each attack and each defense family, the least leakage
whose utility stays within a budget of the undefended run.

A frontier file is a run description (the configuration and the attacks watching it) plus a
``[frontier]`` table::

    data = "mnist"
    model = "lenet"
    cuts = ["pool1"]
    epochs = 5
    attacks = ["whitebox-inversion", "inverse-network"]

    [frontier]
    budget = 0.01                 # utility points the defense may cost (0.01 = 1 accuracy point)
    trials = 6                    # settings tried per defense family (after the strongest one)
    seeds = [0]                   # each point is the mean over these seeds
    confirm_seeds = [1, 2]        # optional: rerun the undefended run and each family's best point on these too
    confirm_attacks = ["whitebox-inversion"]  # optional: judge those reruns with these (one per attack; e.g. full strength)
    families = ["nopeek", "noise", "mid", "attacker-aware"]   # default: every family for the attacks' target
    workers = 2                   # optional: runs in that many processes (families searched side by side)
    # family options: [frontier.family.noise] low = 0.01, high = 10, clip = 8

Search. A family has one strength knob, monotone by construction (NoPeek's alpha, MID's lam, a noise
scale, ...), searched in log space by bisection: first its strongest setting (the whole range is
feasible if that one is), then ``trials`` bisection steps between the strongest feasible and the
weakest infeasible setting found so far. With ``confirm_seeds``, the search runs on ``seeds`` (cheap)
and the undefended run and each family's best point are then rerun on ``seeds + confirm_seeds``: the
table reports those means and standard deviations and judges the budget on them (a point feasible on
the search seeds can fall out of budget on more). ``confirm_attacks`` (one per attack, in order) judges
those reruns with other attack settings: search with a cheap attack, confirm with the full one (a cheap
white-box inversion under-reported a defended model's SSIM by up to 0.18, docs/defenses.md). Every
trained point is kept; all attacks watch the same
trained run, so a family costs ``trials + 1`` trainings per seed, whatever the number of attacks.
The best point for an attack is the feasible one (utility loss <= budget) with the least leakage.

Leakage is normalized per attack: 0 = chance, 1 = the undefended run
(:func:`~secsplit.evaluation.leaks.leak_vs_undefended`). Chance levels are the report's, from
:mod:`secsplit.evaluation.leaks`, averaged over a point's seeds: the mean-image SSIM for
reconstruction (the SSIM of the training set's mean image against the attacked targets: what an
attacker who learned nothing from the release gets), the permuted-label AUC for binary label attacks
(``chance_auc`` of the attack's row) and the majority-class accuracy for multi-class label attacks
(their ``chance_accuracy``; else the majority class's share of the training labels).

Every training run is appended to ``runs.jsonl`` (rows of :func:`execute_run`, keyed by their
config hash) and reused when the frontier is run again, so an interrupted search resumes.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from pathlib import Path

from secsplit.description import RunDescription, read_table_file
from secsplit.errors import ConfigError
from secsplit.specs import parse_spec


@dataclass(frozen=True)
class Family:
    """A defense family with one strength knob: ``spec`` formats with the knob's value.

    ``stronger`` is +1 when a larger knob protects more (NoPeek's alpha), -1 when a smaller one does
    (label DP's epsilon). ``target``: "inputs" or "labels".
    """

    name: str
    spec: str
    low: float
    high: float
    target: str
    stronger: int = 1
    fixed: bool = False  # no knob: one point (max-norm)
    binary_only: bool = False  # left out of the default families on multi-class tasks (marvell)

    def setting(self, value: float, **options) -> str:
        return self.spec.format(v=_fmt(value), **options)


#: the families the frontier searches; options such as ``clip`` are filled from [frontier.family.NAME]
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("noise", "noise:mech=gaussian,clip={clip},scale={v}", 0.01, 10.0, "inputs"),
    Family("nopeek", "nopeek:alpha={v}", 0.01, 10.0, "inputs"),
    Family("mid", "mid:lam={v}", 1e-6, 1.0, "inputs"),
    Family("attacker-aware", "attacker-aware:lam={v}", 0.01, 100.0, "inputs"),
    Family("gradient-noise", "gradient-noise:scale={v}", 0.01, 10.0, "labels"),
    Family("gradient-sparsification", "gradient-sparsification:keep={v}", 0.01, 1.0, "labels", stronger=-1),
    Family("marvell", "marvell:scale={v}", 0.01, 10.0, "labels", binary_only=True),
    Family("max-norm", "max-norm", 1.0, 1.0, "labels", fixed=True),
    Family("label-dp", "label-dp:epsilon={v}", 0.05, 10.0, "labels", stronger=-1),
    Family("cae", "cae:lambda2={v}", 0.1, 20.0, "labels"),
    Family("dcae", "dcae:lambda2={v}", 0.1, 20.0, "labels"),
    Family("mid-labels", "mid:side=labels,lam={v}", 1e-6, 1.0, "labels"),
)}
FAMILY_DEFAULTS = {"noise": {"clip": 8.0}}


def _fmt(value: float) -> str:
    return f"{value:.4g}"


@dataclass
class FrontierConfig:
    """A frontier file: the base run (defenses left empty), the attacks and the search settings."""

    name: str
    base: RunDescription
    budget: float = 0.01
    trials: int = 6
    seeds: tuple[int, ...] = (0,)
    confirm_seeds: tuple[int, ...] = ()
    confirm_attacks: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    family_options: dict = field(default_factory=dict)
    workers: int = 1

    def family(self, name: str) -> Family:
        family = FAMILIES[name]
        options = self.family_options.get(name, {})
        return replace(family, low=float(options.get("low", family.low)), high=float(options.get("high", family.high)))

    def spec_for(self, name: str, value: float) -> str:
        options = {**FAMILY_DEFAULTS.get(name, {}), **{k: v for k, v in self.family_options.get(name, {}).items()
                                                       if k not in ("low", "high")}}
        return FAMILIES[name].setting(value, **options)


FRONTIER_KEYS = ("name", "budget", "trials", "seeds", "confirm_seeds", "confirm_attacks", "families", "family",
                 "workers")


def load_frontier_config(path) -> FrontierConfig:
    raw = read_table_file(path)
    return build_frontier_config(raw, origin=str(path))


def build_frontier_config(raw: dict, *, origin: str = "frontier", budget: float | None = None) -> FrontierConfig:
    """Validate a frontier file: a run description (defenses left empty) and its [frontier] table."""
    raw = dict(raw)
    table = dict(raw.pop("frontier", {}) or {})
    check_frontier_keys(table, origin)
    base = RunDescription.from_dict(raw, where=origin)
    if base.active_defenses:
        raise ConfigError(f"{origin}: a frontier searches the defenses itself; leave 'defenses' out "
                          f"(choose them with [frontier].families)")
    return frontier_config(base, table, origin=origin, budget=budget)


def check_frontier_keys(table, origin: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: frontier must be a table (e.g. {{ budget = 0.01 }}), got {table!r}")
    unknown = sorted(set(table) - set(FRONTIER_KEYS))
    if unknown:
        raise ConfigError(f"{origin}: [frontier]: unknown key(s) {', '.join(unknown)}; valid: {', '.join(FRONTIER_KEYS)}")


def frontier_config(base: RunDescription, table: dict, *, origin: str = "frontier",
                    budget: float | None = None) -> FrontierConfig:
    """Validate the [frontier] settings for the undefended run ``base`` (an audit's experiment or a file)."""
    check_frontier_keys(table, origin)
    base = replace(base, defenses=())
    if not [a for a in base.attacks if a != "none"]:
        raise ConfigError(f"{origin}: a frontier needs at least one attack (attacks = [...])")
    from secsplit.evaluation.build import check_components

    check_components(base, where=origin)
    budget = float(table.get("budget", 0.01)) if budget is None else float(budget)
    if not 0 <= budget < 1:
        raise ConfigError(f"{origin}: [frontier].budget must lie in [0, 1) (utility points, 0.01 = 1 point), got {budget}")
    trials = table.get("trials", 6)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise ConfigError(f"{origin}: [frontier].trials must be an integer >= 0, got {trials!r}")
    workers = table.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"{origin}: [frontier].workers must be an integer >= 1, got {workers!r}")
    seeds = table.get("seeds", [base.seed])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{origin}: [frontier].seeds must be a non-empty list of integers, got {seeds!r}")
    confirm = table.get("confirm_seeds", [])
    if not isinstance(confirm, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in confirm):
        raise ConfigError(f"{origin}: [frontier].confirm_seeds must be a list of integers, got {confirm!r}")
    confirm = [s for s in confirm if s not in seeds]
    confirm_attacks = table.get("confirm_attacks", [])
    searched = [a for a in base.attacks if a != "none"]
    if confirm_attacks:
        if (not isinstance(confirm_attacks, list) or not all(isinstance(a, str) for a in confirm_attacks)
                or len(confirm_attacks) != len(searched)):
            raise ConfigError(f"{origin}: [frontier].confirm_attacks must list one attack per attack "
                              f"({len(searched)}), in order; got {confirm_attacks!r}")
        for mine, theirs in zip(searched, confirm_attacks):
            if parse_spec(mine)[0] != parse_spec(theirs)[0]:
                raise ConfigError(f"{origin}: confirm attack {theirs!r} is not the same attack as {mine!r}")
        check_components(replace(base, attacks=tuple(confirm_attacks)), where=origin)
    options = table.get("family", {}) or {}
    families = table.get("families")
    targets = {attack_target(a) for a in base.attacks if a != "none"}
    if families is None:
        families = [n for n, f in FAMILIES.items() if f.target in targets]
        if any(FAMILIES[n].binary_only for n in families):
            from secsplit.evaluation.build import load_run_data

            if load_run_data(base).num_classes != 2:
                families = [n for n in families if not FAMILIES[n].binary_only]
    if not isinstance(families, list) or not all(isinstance(f, str) for f in families):
        raise ConfigError(f"{origin}: [frontier].families must be a list of names, got {families!r}")
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        raise ConfigError(f"{origin}: unknown frontier family {bad[0]!r}; valid: {', '.join(FAMILIES)}")
    for name, values in options.items():
        if name not in FAMILIES or not isinstance(values, dict):
            raise ConfigError(f"{origin}: [frontier.family.{name}] must name a family and be a table")
    config = FrontierConfig(name=str(table.get("name", Path(origin).stem)), base=base, budget=budget, trials=trials,
                            seeds=tuple(seeds), confirm_seeds=tuple(confirm),
                            confirm_attacks=tuple(confirm_attacks), families=tuple(families), family_options=options,
                            workers=workers)
    for name in families:
        family = config.family(name)
        if not (0 < family.low < family.high or (family.fixed and 0 < family.low)):
            raise ConfigError(f"{origin}: family {name}: need 0 < low < high, got {family.low}, {family.high}")
        check_components(replace(base, defenses=(config.spec_for(name, family.high),)), where=origin)
    return config


def attack_target(spec: str) -> str:
    """"inputs" or "labels": what the attack named by ``spec`` is after (its declared threat model)."""
    from secsplit.attacks import ATTACKS

    name, _ = parse_spec(spec)
    return ATTACKS.lookup(name).threat_model.target


# -- leakage and chance ------------------------------------------------------------------------------

LEAKAGE_KEYS = ("ssim", "leak_auc", "label_accuracy", "accuracy")


#: a finished row whose attack stalled (white-box inversion with no gradient reaching the input): its score
#: is the attack's start image's, not a defended result, so it counts as no leakage measurement at all
STALLED = "attack_stalled"


def leakage_of(row: dict) -> tuple[str, float] | None:
    """(metric, value) an attack row is judged by: SSIM, leak AUC, or label accuracy (None when it stalled)."""
    if row.get("status") == STALLED:
        return None
    leakage = row.get("leakage") or {}
    for key in LEAKAGE_KEYS:
        value = leakage.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return key, float(value)
    return None


def attack_chance(rows: list[dict], attack: str, metric: str) -> float | None:
    """The chance level of ``attack``'s rows (one per seed), averaged like their leakage: each seed's
    split attacks its own targets. From :mod:`secsplit.evaluation.leaks`, as the report's."""
    from secsplit.evaluation.leaks import chance_level

    levels = [chance_level(r, metric) for r in rows if r.get("attack") == attack]
    levels = [c for c in levels if c is not None]
    return statistics.fmean(levels) if levels else None


def normalized(leak: float, chance: float, undefended: float) -> float | None:
    """The frontier's normalization: 0 = chance, 1 = undefended (:func:`~secsplit.evaluation.leaks.leak_vs_undefended`)."""
    from secsplit.evaluation.leaks import leak_vs_undefended

    return leak_vs_undefended(leak, chance=chance, undefended=undefended)


# -- running points ----------------------------------------------------------------------------------

def _set_threads(threads: int, audit_pid: int) -> None:
    import torch

    from secsplit.evaluation.runner import exit_with

    torch.set_num_threads(threads)  # each worker as many torch threads as the parent: N workers share the cores
    exit_with(audit_pid)


def _train_run(description: RunDescription, cache_dir: str) -> tuple[list[dict], float]:
    """One (setting, seed) run: its rows (the parent appends them, one writer per file) and the CPU seconds
    it took in this process (a worker's are not the parent's)."""
    from secsplit.evaluation.audit_config import RunSpec
    from secsplit.evaluation.runner import execute_run

    cpu = time.process_time()
    rows = execute_run(RunSpec(description), None, cache_dir)
    return rows, time.process_time() - cpu


class PointRunner:
    """Trains (or reloads from ``runs.jsonl``) one setting over the config's seeds; means its rows.

    :meth:`submit` starts a setting's missing seeds in ``pool`` (worker processes when ``workers`` > 1, an
    :class:`InlineExecutor` otherwise) and :meth:`record` takes their rows back; :meth:`point` alone runs
    them here, one after another.
    """

    def __init__(self, config: FrontierConfig, out: Path, *, quiet: bool = True, seeds=None, base=None,
                 reuse=(), cache_dir=None, pool=None) -> None:
        """``reuse``: other results files (an audit's results.jsonl) whose rows stand for the same runs;
        ``cache_dir``: the model cache (default ``out/cache``), so another attack on a trained point loads it."""
        from secsplit.evaluation.results import latest_rows, load_rows

        self.config, self.out, self.quiet, self.pool = config, out, quiet, pool
        self.seeds = tuple(config.seeds if seeds is None else seeds)
        self.base = config.base if base is None else base
        self.runs_path = out / "runs.jsonl"
        self.cache_dir = str(cache_dir or out / "cache")
        self.done = {}
        for path in (*map(Path, reuse), self.runs_path):
            if path.exists():
                self.done.update({r["config_hash"]: r for r in latest_rows(load_rows(path))
                                  if r.get("status") in ("ok", STALLED)})
        self.fresh: set[str] = set()  # row keys run in this session (found again later: not counted as reused)
        self.trainings = 0
        self.reused = 0
        self.loaded = 0
        self.worker_cpu = 0.0  # CPU seconds of the runs done in worker processes

    def description(self, defense: str | None, seed: int) -> RunDescription:
        return replace(self.base, defenses=(defense,) if defense else (), seed=seed)

    def found(self, defense: str | None, seed: int, *, count: bool = True) -> list[dict] | None:
        """The finished rows of (setting, seed), or None when one is missing; counts reuse of earlier runs."""
        from secsplit.evaluation.audit_config import RunSpec

        keys = list(RunSpec(self.description(defense, seed)).row_keys().values())
        if not all(k in self.done for k in keys):
            return None
        if count and not any(k in self.fresh for k in keys):
            self.reused += 1
        return [self.done[k] for k in keys]

    def record(self, done: tuple[list[dict], float], defense: str | None, seed: int, *, here: bool = False) -> list[dict]:
        """Append a run's rows (:func:`_train_run`'s result) to ``runs.jsonl`` and count it (trained, or
        loaded from the model cache); ``here``: it ran in this process, so its CPU time is already ours."""
        from secsplit.evaluation.results import append_row

        fresh, cpu = done
        if not here:
            self.worker_cpu += cpu
        if any(r.get("trained") == "cache" for r in fresh):
            self.loaded += 1  # a trained point attacked anew (a confirm attack): weights from the cache
        else:
            self.trainings += 1
        for row in fresh:
            append_row(self.runs_path, row)
            if row.get("status") in ("ok", STALLED):  # a stalled attack is finished: rerunning it stalls again
                self.done[row["config_hash"]] = row
                self.fresh.add(row["config_hash"])
        failed = [r for r in fresh if r.get("status") == "failed"]
        if failed:
            raise ConfigError(f"frontier point {defense or 'none'} (seed {seed}) failed: {failed[0].get('error')}")
        if not self.quiet:
            verb = "loaded" if fresh and fresh[0].get("trained") == "cache" else "trained"
            print(f"  {verb} {defense or 'none'} seed {seed}: utility {fresh[0].get('utility') if fresh else None}",
                  flush=True)
        return fresh

    def submit(self, defense: str | None) -> dict:
        """Start the setting's seeds that have no rows yet in the pool: {future: seed}."""
        return {self.pool.submit(_train_run, self.description(defense, seed), self.cache_dir): seed
                for seed in self.seeds if self.found(defense, seed, count=False) is None}

    def prefetch(self, defenses) -> None:
        """Run every missing (setting, seed) of ``defenses`` in the pool at once (no-op without one)."""
        from concurrent.futures import as_completed

        if self.pool is None:
            return
        futures = {}
        for defense in dict.fromkeys(defenses):
            futures.update({f: (defense, seed) for f, seed in self.submit(defense).items()})
        for future in as_completed(futures):
            self.record(future.result(), *futures[future])

    def point(self, defense: str | None) -> dict:
        """{"utility": mean, "utility_sd", "leakage": {attack: (metric, mean, sd)}, "rows": [...]}."""
        rows = []
        for seed in self.seeds:
            found = self.found(defense, seed)
            if found is None:
                found = self.record(_train_run(self.description(defense, seed), self.cache_dir), defense, seed, here=True)
            rows.extend(found)
        return summarize_point(defense, rows)


def summarize_point(defense: str | None, rows: list[dict]) -> dict:
    per_seed = {}  # every attack's row of a seed carries the same training run's utility: one per seed
    for r in rows:
        if isinstance(r.get("utility"), (int, float)):
            per_seed.setdefault(r["seed"], float(r["utility"]))
    utilities = list(per_seed.values())
    by_attack: dict[str, list] = {}
    for r in rows:
        found = leakage_of(r)
        if found:
            by_attack.setdefault(r["attack"], []).append(found)
    stalled: dict[str, int] = {}
    for r in rows:
        if r.get("status") == STALLED:
            stalled[r["attack"]] = stalled.get(r["attack"], 0) + 1
    seeds = sorted({r["seed"] for r in rows})
    # a run stopped before training finished (a detection defense) has no utility: it is no feasible point
    utility = statistics.fmean(utilities) if len(utilities) == len(seeds) and utilities else None
    return {
        "defense": defense or "none", "seeds": seeds,
        "utility": utility, "utility_sd": statistics.stdev(utilities) if len(utilities) > 1 else 0.0,
        "leakage": {a: {"metric": v[0][0], "mean": statistics.fmean(x for _, x in v),
                        "sd": statistics.stdev([x for _, x in v]) if len(v) > 1 else 0.0} for a, v in by_attack.items()},
        "stalled": stalled,  # attack -> seeds whose attack stalled (left out of the leakage mean)
        "rows": rows,
    }


def bisection(family: Family, *, budget: float, trials: int, baseline_utility):
    """Bisection in log space on a monotone knob, as a generator: yields a knob value to try, is sent its
    point, returns every point (judged against ``baseline_utility()``, called when a point comes back)."""
    points = []

    def judge(point: dict, value: float) -> bool:
        point["value"] = value
        point["utility_loss"] = None if point["utility"] is None else baseline_utility() - point["utility"]
        point["feasible"] = point["utility_loss"] is not None and point["utility_loss"] <= budget + 1e-12
        points.append(point)
        return point["feasible"]

    strong, weak = (family.high, family.low) if family.stronger > 0 else (family.low, family.high)
    if judge((yield strong), strong) or family.fixed:
        return points
    infeasible, feasible = math.log(strong), math.log(weak)  # the weakest end is assumed feasible (not trained)
    found = False
    for _ in range(trials):
        middle = (infeasible + feasible) / 2
        if judge((yield math.exp(middle)), math.exp(middle)):
            feasible, found = middle, True
        else:
            infeasible = middle
    if not found:  # the weakest end was only assumed feasible: measure it (a layer may cost utility by itself)
        judge((yield weak), weak)
    return points


class InlineExecutor(Executor):
    """Runs each submitted call at once, here: :func:`search_in_pool`'s path when there are no workers."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to whoever reads the result, as a pool would
            future.set_exception(error)
        return future


def search_in_pool(runner: PointRunner, config: FrontierConfig, names: list[str]) -> tuple[dict, dict, dict]:
    """The undefended run and every family's bisection at once in the runner's pool: each family's next
    point starts as soon as its last one is back, so the workers stay busy. Returns (baseline point,
    {family: points}, {family: trainings})."""
    from concurrent.futures import FIRST_COMPLETED, wait

    here = isinstance(runner.pool, InlineExecutor)  # runs made in this process: their CPU time is ours already
    baseline: dict = {}
    searches = {name: bisection(config.family(name), budget=config.budget, trials=config.trials,
                                baseline_utility=lambda: baseline["utility"]) for name in names}
    results: dict = {}
    trainings = dict.fromkeys(names, 0)
    owner: dict = {}  # future -> (family or None for the undefended run, setting, seed)
    waiting: dict = {}  # family or None -> (setting, futures left, rows by seed)
    held: list = []  # families whose point is back before the undefended run is

    def start(name, setting) -> None:
        futures = runner.submit(setting)
        rows = {seed: runner.found(setting, seed) for seed in runner.seeds if seed not in futures.values()}
        waiting[name] = (setting, set(futures), rows)  # rows by seed, as they come back
        owner.update({f: (name, setting, seed) for f, seed in futures.items()})
        if not futures:
            finish(name)
        for future in [f for f in futures if f.done()]:  # inline: at once, so the search goes depth first
            collect(future)

    def collect(future) -> None:
        name, setting, seed = owner.pop(future)
        rows = runner.record(future.result(), setting, seed, here=here)
        if name is not None and not any(r.get("trained") == "cache" for r in rows):
            trainings[name] += 1
        waiting[name][2][seed] = rows
        waiting[name][1].discard(future)
        if not waiting[name][1]:
            finish(name)

    def finish(name) -> None:
        setting, _, rows = waiting.pop(name)
        point = summarize_point(setting, [r for seed in runner.seeds for r in rows[seed]])
        if name is None:
            if point["utility"] is None:
                raise ConfigError("the undefended run reports no utility; a frontier needs one")
            baseline.update(point)
            for other, other_point in held:
                advance(other, other_point)
            held.clear()
        elif not baseline:
            held.append((name, point))
        else:
            advance(name, point)

    def advance(name, point) -> None:
        try:
            value = searches[name].send(point) if point is not None else next(searches[name])
        except StopIteration as stop:
            results[name] = stop.value
            return
        start(name, config.spec_for(name, value))

    start(None, None)
    for name in names:
        advance(name, None)
    while owner:
        finished, _ = wait(owner, return_when=FIRST_COMPLETED)
        for future in finished:
            if future in owner:
                collect(future)
    return baseline, results, trainings


# -- the frontier ------------------------------------------------------------------------------------

def run_frontier(config: FrontierConfig, out, *, quiet: bool = False, reuse=(), cache_dir=None) -> dict:
    """Search every family, write the frontier table, points and plots under ``out``; returns the summary.

    ``reuse``/``cache_dir``: rows and trained models of an audit that ran the same settings (see PointRunner).
    With ``config.workers`` > 1 the runs go to that many worker processes (each with this process's torch
    threads): the families' searches run side by side, and the confirmation's runs all at once.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    pool = None
    if config.workers > 1:
        import multiprocessing

        import torch
        from concurrent.futures import ProcessPoolExecutor

        # forked from a fresh server process that has imported the runner, not from this one: a fork of a
        # process that has run torch can deadlock in its thread pools (measured here), and spawning
        # imports torch and secsplit anew in every worker
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["secsplit.evaluation.runner", "secsplit.evaluation.build"])
        pool = ProcessPoolExecutor(max_workers=config.workers, mp_context=context,
                                   initializer=_set_threads, initargs=(torch.get_num_threads(), os.getpid()))
    try:
        summary = _search_and_confirm(config, out, quiet=quiet, reuse=reuse, cache_dir=cache_dir, pool=pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    # with workers: this process's CPU time plus the runs' own in the workers (their start-up not counted)
    cpu = time.process_time() - cpu_start + summary.pop("_worker_cpu")
    summary.update({"wall_time_s": round(time.perf_counter() - start, 1), "cpu_time_s": round(cpu, 1),
                    "workers": config.workers})
    write_outputs(out, summary, summary.pop("_points"))
    return summary


def _search_and_confirm(config: FrontierConfig, out: Path, *, quiet, reuse, cache_dir, pool) -> dict:
    # the search always goes through search_in_pool: without workers its runs are made here, one at a time
    runner = PointRunner(config, out, quiet=quiet, reuse=reuse, cache_dir=cache_dir,
                         pool=pool if pool is not None else InlineExecutor())
    attacks = [a for a in config.base.attacks if a != "none"]
    targets = {a: attack_target(a) for a in attacks}
    names = [n for n in config.families if config.family(n).target in targets.values()]
    if not quiet:
        for name in names:
            family = config.family(name)
            print(f"family {name}: searching {family.low:g}..{family.high:g}", flush=True)
    baseline, found, trainings = search_in_pool(runner, config, names)
    trials_per_family = {name: {"points": len(found[name]), "trainings": trainings[name]} for name in names}
    chance = {a: attack_chance(baseline["rows"], a, baseline["leakage"][a]["metric"])
              for a in attacks if a in baseline["leakage"]}
    all_points = [{**baseline, "family": "none", "value": None, "utility_loss": 0.0, "feasible": True}]
    for name in names:
        for p in found[name]:
            p["family"] = name
        all_points.extend(found[name])
    table = frontier_table(config, attacks, targets, baseline, all_points, chance)
    if config.confirm_seeds or config.confirm_attacks:
        seeds = tuple(config.seeds) + tuple(config.confirm_seeds)
        base = replace(config.base, attacks=config.confirm_attacks) if config.confirm_attacks else config.base
        if not quiet:
            print(f"confirming the best points on seeds {list(seeds)}"
                  + (f" with {', '.join(config.confirm_attacks)}" if config.confirm_attacks else ""), flush=True)
        confirmer = PointRunner(config, out, quiet=quiet, seeds=seeds, base=base, cache_dir=runner.cache_dir, pool=pool)
        confirmer.done = runner.done  # rows already trained (same run, same attack) are reused, not retrained
        confirmer.prefetch([None, *(r["setting"] for r in table if r["within_budget"] and r["setting"] is not None)])
        confirm_rows(config, table, confirmer, dict(zip(attacks, config.confirm_attacks or attacks)))
        runner.trainings += confirmer.trainings
        runner.reused += confirmer.reused
        runner.loaded += confirmer.loaded
        runner.worker_cpu += confirmer.worker_cpu
    return {"name": config.name, "budget": config.budget, "seeds": list(config.seeds),
            "confirm_seeds": list(config.confirm_seeds), "trials": config.trials,
            "trainings": runner.trainings, "reused": runner.reused, "loaded_from_cache": runner.loaded,
            "points_per_family": trials_per_family, "baseline_utility": baseline["utility"],
            "configuration": configuration_label(config.base), "rows": table,
            "_points": all_points, "_worker_cpu": runner.worker_cpu}


def confirm_rows(config: FrontierConfig, table: list[dict], runner, attack_map: dict | None = None) -> None:
    """Rerun the undefended run and every within-budget best point on the runner's seeds (``seeds +
    confirm_seeds``), judged by ``attack_map[attack]`` (the confirm attack; default the same), and rewrite
    those rows with the means: utility loss, leakage, budget and chance verdicts."""
    seeds = list(runner.seeds)
    attack_map = attack_map or {}
    baseline = runner.point(None)
    chances = {}
    for row in table:
        row["seeds"] = list(config.seeds)
        if not row["within_budget"] or row["setting"] is None:
            continue
        attack = attack_map.get(row["attack"], row["attack"])
        undefended = baseline["leakage"].get(attack)
        point = runner.point(row["setting"])
        leak = point["leakage"].get(attack)
        if undefended is None or leak is None or point["utility"] is None:
            continue
        loss = baseline["utility"] - point["utility"]
        if attack not in chances:  # over the confirm seeds' (and the confirm attack's) own targets
            chances[attack] = attack_chance(baseline["rows"], attack, undefended["metric"])
        c = chances[attack] if chances[attack] is not None else row["chance"]
        row["chance"] = c
        if attack != row["attack"]:
            row.update({"confirm_attack": attack, "search_leakage": row["leakage"]})
        within = loss <= config.budget + 1e-12
        row.update({
            "seeds": seeds, "utility": point["utility"], "utility_sd": point["utility_sd"],
            "utility_loss": loss, "baseline_utility": baseline["utility"], "baseline_utility_sd": baseline["utility_sd"],
            "leakage": leak["mean"], "leakage_sd": leak["sd"], "undefended_leakage": undefended["mean"],
            "undefended_leakage_sd": undefended["sd"],
            "normalized_leakage": None if c is None else normalized(leak["mean"], c, undefended["mean"]),
            "within_budget": within, "confirmed": True, "stalled_seeds": point.get("stalled", {}).get(attack, 0),
            "reaches_chance": bool(within and c is not None and leak["mean"] - c <= 0.05),
        })


def configuration_label(d: RunDescription) -> str:
    cuts = ",".join(d.cuts) if d.cuts else "default cut"
    return f"{Path(d.data.name).name} {d.model.name or 'default model'} {d.topology.name} {cuts}"


def frontier_table(config, attacks, targets, baseline, points, chance) -> list[dict]:
    rows = []
    for attack in attacks:
        undefended = baseline["leakage"].get(attack)
        if undefended is None:
            continue
        c = chance.get(attack)
        for name in config.families:
            if FAMILIES[name].target != targets[attack]:
                continue
            family_points = [p for p in points if p["family"] == name and attack in p["leakage"]]
            feasible = [p for p in family_points if p["feasible"]]
            best = min(feasible, key=lambda p: p["leakage"][attack]["mean"]) if feasible else None
            closest = None
            if best is None and family_points:  # none within budget: the least costly point tried
                closest = min(family_points, key=lambda p: (p["utility_loss"] is None, p["utility_loss"] or 0))
            shown = best or closest
            leak = shown["leakage"][attack] if shown else None
            norm = None if leak is None or c is None else normalized(leak["mean"], c, undefended["mean"])
            rows.append({
                "configuration": configuration_label(config.base), "attack": attack, "metric": undefended["metric"],
                "defense": name, "setting": shown["defense"] if shown else None,
                "within_budget": best is not None, "utility": shown["utility"] if shown else None,
                "utility_sd": shown["utility_sd"] if shown else None,
                "utility_loss": shown["utility_loss"] if shown else None,
                "leakage": leak["mean"] if leak else None, "leakage_sd": leak["sd"] if leak else None,
                "undefended_leakage": undefended["mean"], "chance": c, "normalized_leakage": norm,
                "reaches_chance": bool(best is not None and c is not None and leak["mean"] - c <= 0.05),
                "points_tried": len(family_points),
                "stalled_seeds": shown.get("stalled", {}).get(attack, 0) if shown else 0,
            })
    return rows


def write_outputs(out: Path, summary: dict, points: list[dict]) -> None:
    from secsplit.atomic import atomic_write

    slim = [{k: v for k, v in p.items() if k != "rows"} for p in points]
    atomic_write(out / "frontier.json", json.dumps({**summary, "points": slim}, indent=2, default=str).encode())
    atomic_write(out / "frontier.md", markdown_table(summary).encode())
    write_csv(out / "frontier.csv", summary["rows"])
    pareto_plots(out, summary, slim)


COLUMNS = ("configuration", "attack", "defense", "setting", "utility_loss", "leakage", "undefended_leakage", "chance",
           "normalized_leakage", "within_budget", "reaches_chance", "points_tried", "seeds")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(summary: dict) -> str:
    lines = [f"# Frontier {summary['name']}: least leakage within {summary['budget'] * 100:g} accuracy point(s)", "",
             (f"{summary['configuration']}; undefended utility {summary['baseline_utility']:.3f}; seeds "
              f"{summary['seeds']}; {summary['trainings']} trainings ({summary['reused']} reused, "
              f"{summary.get('loaded_from_cache', 0)} loaded from the model cache) in "
              f"{summary['wall_time_s']:.0f} s wall, {summary.get('cpu_time_s', 0):.0f} s CPU"
              f" ({summary.get('workers', 1)} worker(s))."), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in summary["rows"]:
        cells = []
        for c in COLUMNS:
            value = row.get(c)
            if c == "leakage" and value is not None and row.get("leakage_sd"):
                value = f"{value:.3f} ± {row['leakage_sd']:.3f}"
            if c == "leakage" and value is not None and row.get("stalled_seeds"):
                value = f"{_cell(value)} ({row['stalled_seeds']} seed(s) stalled, left out)"
            if c == "seeds":
                value = ",".join(map(str, row.get("seeds") or summary["seeds"]))
            if c == "setting" and value and not row["within_budget"]:
                value = f"none within budget; closest: {value}"
            cells.append(_cell(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    import csv
    import io

    from secsplit.atomic import atomic_write

    buffer = io.StringIO()
    fields = list(rows[0]) if rows else list(COLUMNS)
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buffer.getvalue().encode())


def pareto_plots(out: Path, summary: dict, points: list[dict]) -> list[Path]:
    """One plot per attack: utility loss vs normalized leakage of every point, the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for attack in sorted({r["attack"] for r in summary["rows"]}):
        row = next(r for r in summary["rows"] if r["attack"] == attack)
        chance, undefended = row["chance"], row["undefended_leakage"]
        xs, ys, fams = [], [], []
        for p in points:
            leak = p["leakage"].get(attack)
            if leak is None or p["utility_loss"] is None or chance is None:
                continue
            norm = normalized(leak["mean"], chance, undefended)
            if norm is None:
                continue
            xs.append(p["utility_loss"] * 100)
            ys.append(norm)
            fams.append(p["family"])
        if not xs:
            continue
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for family in sorted(set(fams)):
            sel = [i for i, f in enumerate(fams) if f == family]
            ax.scatter([xs[i] for i in sel], [ys[i] for i in sel], label=family, s=28)
        front, best = [], float("inf")
        for x, y in sorted(zip(xs, ys)):
            if y < best:
                front.append((x, y))
                best = y
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color="black", lw=1, label="frontier")
        ax.axvline(summary["budget"] * 100, color="grey", ls="--", lw=1, label="budget")
        ax.axhline(0, color="grey", ls=":", lw=1)
        ax.set_xlabel("utility loss (accuracy points)")
        ax.set_ylabel("normalized leakage (0 = chance, 1 = undefended)")
        ax.set_title(f"{attack} | {summary['configuration']}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"pareto-{attack.split(':')[0]}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
