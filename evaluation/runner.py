"""Run an audit grid: train each configuration once with its attacks watching, score, append rows.

Resumable (finished rows are skipped), parallel (a local process pool, or Ray), and a failed run
is recorded as a row with its error and does not stop the audit.
"""

from __future__ import annotations

import functools
import os
import platform
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from secsplit.errors import TrainingStopped
from secsplit.description import stable_hash
from secsplit.evaluation.audit_config import AuditConfig, RunSpec
from secsplit.evaluation.model_cache import ModelCache
from secsplit.evaluation.results import append_row, finished_keys


def _versions() -> dict:
    import torch

    import secsplit

    return {"secsplit": secsplit.__version__, "torch": torch.__version__, "python": platform.python_version()}


def _released_probe(topology, x):
    """What the first party after the data owner receives for inputs x (the released activations)."""
    seen = []
    remove = topology.channel.add_tap(
        topology.data_owner,
        lambda m: seen.append(m.tensor) if m.kind == "activation" and m.src == topology.data_owner else None)
    try:
        topology.predict(x)
    except TrainingStopped:  # a defense stopped the client from releasing anything more (e.g. hijack detected)
        return None
    finally:
        remove()
    return seen[0] if seen else None


def leakage_probe(topology, x, *, seed: int = 0, permutations: int = 5) -> dict:
    """dCor(X, Z) between inputs ``x`` and what the client releases for them, both estimators, with n, and
    ``dcor_chance``: the biased dCor of the same inputs against the releases of other inputs (rows
    permuted), the level an independent release reaches at this n (the bias-corrected one is 0 there).
    Empty when nothing is released (a defense stopped the client) or n < 4."""
    import torch

    from secsplit.stats import distance_correlation

    with torch.no_grad():
        released = _released_probe(topology, x)
    if released is None or len(x) < 4:
        return {}
    generator = torch.Generator().manual_seed(seed)
    chance = [float(distance_correlation(x, released[torch.randperm(len(x), generator=generator)]))
              for _ in range(permutations)]
    return {"dcor": float(distance_correlation(x, released)),
            "dcor_unbiased": float(distance_correlation(x, released, estimator="unbiased")),
            "dcor_n": len(x), "dcor_chance": sum(chance) / len(chance)}


def score_result(result) -> dict:
    """Leakage metrics of an attack's guesses (scored against the truth it carries)."""
    return result.scores()


def display_training(description) -> dict:
    """The flat summary tables and plots show for a run (the full description is stored beside it)."""
    options = description.topology_options
    topology = description.topology.name + ("" if not options else
                                            ":" + ",".join(f"{k}={v}" for k, v in sorted(options.items())))
    return {"dataset": Path(description.data.name).name if _is_file(description.data.name) else description.data.name,
            "model": description.model.name, "topology": topology,
            "cuts": list(description.cuts) if description.cuts else None,
            "defense": "+".join(description.active_defenses) or "none", "seed": description.seed,
            "epochs": description.epochs, "batch_size": description.batch_size,
            "lr": description.optimizer.options.get("lr"), "label_source": description.label_source}


def _is_file(source: str) -> bool:
    from secsplit.data import DATASETS

    return source not in DATASETS


def execute_run(spec: RunSpec, artifacts_dir: str | None = None, cache_dir: str | None = None, *,
                all_seats: bool = True) -> list[dict]:
    """Train one configuration with its attacks attached; return one row per attack and seat.

    Everything is built by :func:`secsplit.evaluation.build.build_run` from the run's description,
    which every row stores in full (``run``) with its hash (``run_key``). Each attack runs from every
    party that receives what it reads (``all_seats``; each row names its ``seat``), and with
    ``description.tune`` each post-hoc attack is tuned on held-back validation data first
    (:mod:`secsplit.evaluation.tuning`). Reconstruction image grids are saved under ``artifacts_dir``.
    With ``cache_dir``, trained weights are cached per training configuration, and a run whose
    attacks do not observe training loads them instead of training.
    """

    from secsplit.evaluation.build import build_run

    description = spec.description
    keys = spec.row_keys()
    training = display_training(description)
    base = {"training": training, "run": description.to_dict(), "run_key": description.key(),
            "training_key": spec.training_key(), "versions": _versions(), "seed": description.seed}
    slot_rows: list[tuple[str, str, dict]] = []
    variants: dict[str, str] = {}
    start = time.perf_counter()
    try:
        built = build_run(description, all_seats=all_seats)
        variants.update(built.variants)
        training["model"] = built.model_name
        topology, dataset, defenses = built.topology, built.dataset, built.defenses
        cache = ModelCache(cache_dir) if cache_dir else None
        post_hoc = all(not a.observes_training for a in built.attacks.values())
        cached = cache.load(spec.training_key(), topology) if cache and post_hoc else None
        if cached is None:
            report = built.fit()
            summary = {**report.summary, "epochs_trained": len(report.history)}  # fewer than asked after early stopping
            defense_info = {"epsilon": _combined(d.epsilon() for d in defenses),
                            "report": [d.report() for d in defenses] or None}
            if cache:
                cache.save(spec.training_key(), topology, {"summary": summary, "defense": defense_info})
        else:
            summary, defense_info = cached["summary"], cached["defense"]
        leakage = leakage_probe(topology, dataset.x_test[: description.probe_samples], seed=description.seed)
        common = {
            "topology": topology.name, "cuts": topology.cuts, "utility": summary["test_accuracy"],
            "utility_metric": "test_accuracy", "stopped": summary.get("stopped"),
            "epsilon": defense_info["epsilon"], "defense_report": defense_info["report"],
            "trained": "cache" if cached is not None else "fresh",
            "epochs_trained": summary.get("epochs_trained"),
            "client_flops_train": summary["client_train_flops"], "flops": summary["flops"],
            "bytes": summary["traffic"]["per_party"], "train_wall_time_s": summary["wall_time_s"], **leakage,
            # labels the protocol itself hands to another party: exposed without any attack
            "labels_sent": sorted({f"{r.src} -> {r.dst}" for r in topology.routes() if r.kind == "labels"}),
        }
        for (attack_spec, seat), reason in built.not_applicable.items():
            slot_rows.append((attack_spec, seat, {"status": "not_applicable", "reason": reason, **common}))
        for (attack_spec, seat), attack in built.attacks.items():
            row = {"status": "ok", **common}
            try:
                row.update(_attack_row(attack_spec, seat, attack, built, description, artifacts_dir,
                                       keys[built.variants.get(attack_spec, attack_spec)], training))
            except Exception as error:  # an attack failing must not lose the run's other rows
                row.update(status="failed", error=f"{type(error).__name__}: {error}",
                           traceback=traceback.format_exc(limit=5))
            slot_rows.append((attack_spec, seat, row))
        for attack_spec in spec.attacks:
            if attack_spec == "none":
                slot_rows.append((attack_spec, None, {"status": "ok", **common}))
    except Exception as error:
        failure = {"status": "failed", "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=5)}
        slot_rows = [(a, None, dict(failure)) for a in spec.attacks]
    elapsed = time.perf_counter() - start
    order = {a: i for i, a in enumerate(spec.attacks)}
    slot_rows.sort(key=lambda item: order.get(variants.get(item[0], item[0]), len(order)))
    rows = []
    for attack_spec, seat, row in slot_rows:
        default_seat = _default_seat(attack_spec)
        seat = seat or default_seat
        variant_of = variants.get(attack_spec)
        if variant_of is not None:  # a tuned audit's other setting of an attack that watches training
            attack_key = keys[variant_of]
            key = stable_hash({"attack_key": attack_key, "variant": attack_spec, "seat": seat})
            row = {**row, "tuning": {"variant_of": variant_of}}
        else:
            attack_key = keys[attack_spec]
            key = spec.slot_key(attack_spec, seat, default_seat) if seat else attack_key
        rows.append({"config_hash": key, "attack_key": attack_key, "attack": attack_spec, "seat": seat,
                     **base, **row, "wall_time_s": elapsed})
    return rows


@functools.lru_cache(maxsize=None)
def _default_seat(attack_spec: str) -> str | None:
    """The seat ``attack_spec`` takes when none is given (its rows there keep the attack's own key); one
    attack is built per spec to learn it, not one per row."""
    if attack_spec == "none":
        return None
    from secsplit.evaluation.build import create_attack_from_spec

    try:
        return create_attack_from_spec(attack_spec).seat
    except Exception:  # a spec that cannot be built has no seat; its row says why
        return None


def _attack_row(attack_spec: str, seat: str, attack, built, description, artifacts_dir, attack_key: str,
                training: dict) -> dict:
    """One seat's result: the attack at its declared settings, or tuned when the description asks."""
    row: dict = {}
    start = time.perf_counter()
    result = attack.result()
    row["attack_wall_time_s"] = time.perf_counter() - start
    if description.tune:
        from secsplit.evaluation.build import create_attack_from_spec
        from secsplit.evaluation.tuning import spec_with, tune_attack

        seat_params = {attack.seat_option: attack.seat} if attack.seat_option else {}  # trials sit where it sits
        outcome = tune_attack(attack_spec, seat_params=seat_params, topology=built.topology, dataset=built.dataset,
                              seed=description.seed)
        row["tuning"] = outcome.summary()
        if outcome.best_params:
            tuned = create_attack_from_spec(spec_with(attack_spec, **outcome.best_params), seed=description.seed,
                                            **seat_params)
            tuned.check_applicable(built.topology, built.dataset)
            tuned.targets = attack.targets
            tuned.attach(built.topology)
            row["leakage_declared"] = score_result(result)
            start = time.perf_counter()
            result = tuned.result()
            row["attack_wall_time_s"] += time.perf_counter() - start
    row["leakage"] = score_result(result)
    if result.info.get("stalled"):
        row.update(status="attack_stalled", reason=str(result.info.get("stalled_reason") or result.info["stalled"]))
    if artifacts_dir and result.reconstructions is not None and result.originals is not None:
        from secsplit.evaluation.plots import reconstruction_grid

        grid = f"grid-{attack_key}-{seat}.png"
        reconstruction_grid(result.originals, result.reconstructions, Path(artifacts_dir) / grid,
                            title=f"{attack_spec} from {seat} | {training['dataset']} {built.topology.name} cut "
                                  f"{built.topology.cuts[0]} | {training['defense']}")
        row["grid"] = grid
    return row


def _combined(epsilons):
    """The DP statement of a run: the one DP defense's epsilon (None without one; a list with several)."""
    found = [e for e in epsilons if e is not None]
    return None if not found else found[0] if len(found) == 1 else found


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # several runs share the cores; more threads each only contend
    exit_with(os.getppid())


def exit_with(pid: int, interval_s: float = 1.0) -> None:
    """End this worker process once process ``pid`` (the audit that started its pool) is gone, killed or
    stopped by ``timeout``, instead of training on for nobody and writing into a later run's model
    cache. A forkserver's worker cannot rely on its own parent: the forkserver lives as long as its
    workers do."""
    import threading

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):  # PermissionError: the pid now is someone else's
            return True
        return False

    def watch() -> None:
        while not gone():
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=watch, name="secsplit-exit-with-audit", daemon=True).start()


def add_worker_seconds(phases: dict, rows: list[dict]) -> None:
    """Add one training run's time by phase to ``phases`` (seconds of one worker: with ``--jobs N`` the
    phases of N runs overlap, so they sum to about N x the wall time). Training counts once per run and
    only when it trained (a model loaded from the cache cost nothing); tuning is its searches, attacks
    are the attacks' own runs (the declared one and the tuned one)."""
    if not rows:
        return
    first = rows[0]
    if first.get("trained") == "fresh":
        phases["training"] += first.get("train_wall_time_s") or 0.0
    for row in rows:
        phases["attacks"] += row.get("attack_wall_time_s") or 0.0
        phases["tuning"] += (row.get("tuning") or {}).get("seconds") or 0.0
    phases["total"] += first.get("wall_time_s") or 0.0


def run_audit(config: AuditConfig, results_path, *, jobs: int = 1, executor: str = "process", quiet: bool = False,
              artifacts_dir=None, on_row: Callable[[dict], None] | None = None, ray_address: str | None = None) -> dict:
    """Run every unfinished run of ``config``, appending rows to ``results_path`` as they finish.

    ``executor="ray"`` runs on a local Ray instance, or joins the cluster at ``ray_address``.
    """
    artifacts_dir = str(artifacts_dir) if artifacts_dir else None
    if artifacts_dir:
        Path(artifacts_dir).mkdir(parents=True, exist_ok=True)
    cache_dir = str(Path(results_path).parent / "cache")
    done = finished_keys(results_path)
    todo = [spec for spec in config.runs if not set(spec.row_keys().values()) <= done]  # attack keys of finished runs
    counts = {"runs": len(config.runs), "skipped": len(config.runs) - len(todo), "rows": 0, "failed": 0,
              "worker_seconds": {"training": 0.0, "attacks": 0.0, "tuning": 0.0, "total": 0.0}}
    bar = tqdm(total=len(todo), desc=f"audit {config.name}", disable=quiet, unit="run")

    def record(rows: list[dict]) -> None:
        add_worker_seconds(counts["worker_seconds"], rows)
        for row in rows:
            if row["config_hash"] in done:
                continue
            append_row(results_path, row)
            counts["rows"] += 1
            counts["failed"] += row["status"] == "failed"
            if on_row:
                on_row(row)
        bar.update(1)
        last = rows[0]
        bar.set_postfix_str(f"{last['training']['dataset']}/{last['training']['topology']}/"
                            f"{last['training']['defense']}: {','.join(sorted({r['status'] for r in rows}))}")

    if executor == "ray":
        _run_with_ray(todo, jobs, record, artifacts_dir, cache_dir, address=ray_address)
    elif jobs <= 1:
        _worker_init()
        for spec in todo:
            record(execute_run(spec, artifacts_dir, cache_dir))
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init) as pool:
            futures = [pool.submit(execute_run, spec, artifacts_dir, cache_dir) for spec in todo]
            for future in as_completed(futures):
                record(future.result())
    bar.close()
    return counts


def _run_with_ray(todo: list[RunSpec], jobs: int, record, artifacts_dir, cache_dir, address: str | None = None) -> None:
    """Run on Ray: a local one started here with ``jobs`` CPUs, or the cluster at ``address`` (or $RAY_ADDRESS).

    Rows come back to this process, which appends them; image grids and the model cache are written
    by the worker that ran the row, so on several hosts give them a shared folder (``--out``).
    """
    try:
        import ray
    except ImportError:
        from secsplit.errors import ConfigError

        raise ConfigError("--executor ray needs the optional extra: pip install 'secsplit[ray]'") from None
    started = not ray.is_initialized()
    address = address or os.environ.get("RAY_ADDRESS")
    if started and address:  # join a running cluster (`ray start --head` / `--address`): it has its own CPUs
        ray.init(address=address, log_to_driver=False)
    elif started:
        ray.init(num_cpus=max(jobs, 1), include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(lambda spec: (_worker_init(), execute_run(spec, artifacts_dir, cache_dir))[1])
        pending = [remote.remote(spec) for spec in todo]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            record(ray.get(ready[0]))
    finally:
        if started:
            ray.shutdown()
