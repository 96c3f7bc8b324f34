"""`secsplit train`: train a split model in process and print accuracy, traffic and time."""

from __future__ import annotations

import argparse
import json

from secsplit.evaluation.commands.common import positive_int
from secsplit.evaluation.commands.run_args import add_run_arguments, description_from_args, print_description
from secsplit.evaluation.commands.serve import add_connect_arguments


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train a split model and print its results")
    add_run_arguments(train)
    train.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--save", default=None, metavar="DIR",
                       help="save the trained model as a checkpoint directory (one safetensors file per party; see `secsplit predict`)")
    resume = train.add_argument_group("training checkpoints (resume after a crash)")
    resume.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="save weights, optimizer and trainer state here every --checkpoint-every steps")
    resume.add_argument("--checkpoint-every", type=positive_int, default=50, metavar="STEPS", help="default 50")
    resume.add_argument("--resume", action="store_true",
                        help="continue from the last state in --checkpoint-dir (same settings; in process only)")
    add_connect_arguments(train, what="retired: across processes every party runs `secsplit serve --role PARTY "
                                      "--config run.toml` (docs/transport.md)")
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from secsplit.evaluation.build import build_run
    from secsplit.evaluation.runner import _combined

    description = description_from_args(args)
    if args.print_config:
        print_description(description)
        return 0
    if getattr(args, "connect", None):
        from secsplit.errors import ConfigError

        raise ConfigError(CONNECT_RETIRED)
    checkpointing = _checkpointing(args)
    _check_or_record_run(checkpointing, description)
    remote = None
    built = build_run(description, progress=False if (args.quiet or args.json) else None,
                      checkpointing=checkpointing, remote=remote)
    topology = built.topology
    if getattr(args, "save", None):
        _check_save_target(args.save, topology)  # fail before training, not after
    try:
        report = built.fit()
        probe = None if remote else leakage_probe(topology, built.dataset, description.probe_samples)
    finally:
        topology.close()
    summary = {**report.summary, "model": built.model_name, "cuts": topology.cuts, "history": report.history,
               "defenses": [d.report() for d in built.defenses], "leakage_probe": probe,
               "epsilon": _combined(d.epsilon() for d in built.defenses), "run": description.to_dict(),
               "run_key": description.key()}
    if getattr(args, "save", None):
        summary["checkpoint"] = str(_save(args, built, summary))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0


def leakage_probe(topology, dataset, n: int) -> dict | None:
    """dCor between ``n`` test inputs and what the client releases for them, both estimators (the audit's
    probe): what a practitioner needs to judge an activation defense. None when nothing is released."""
    from secsplit.evaluation.runner import leakage_probe as probe

    found = probe(topology, dataset.x_test[:n])
    if not found:
        return None
    return {"dcor": found["dcor"], "dcor_unbiased": found["dcor_unbiased"], "n": found["dcor_n"],
            "dcor_chance": found["dcor_chance"]}


#: what a resumed run must share with the run that saved the state (epochs may grow; the device may change)
RESUME_FIELDS = ("data", "model", "topology", "cuts", "defenses", "optimizer", "batch_size", "seed")
RUN_RECORD = "run.json"


def _check_or_record_run(checkpointing, description) -> None:
    """Record the run's settings beside its checkpoints; on --resume, refuse any that changed.

    A defense or learning rate added on resume would otherwise apply to part of the run only while
    the summary reports it for the whole run (a DP epsilon over releases that were never noised).
    """
    from pathlib import Path

    from secsplit.atomic import atomic_write
    from secsplit.errors import ConfigError

    if checkpointing is None:
        return
    path = Path(checkpointing.directory) / RUN_RECORD
    mine = json.loads(json.dumps({k: v for k, v in description.to_dict().items() if k in RESUME_FIELDS}))
    if not checkpointing.resume:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(mine, indent=1, sort_keys=True).encode())
        return
    if not path.exists():
        return  # saved before runs were recorded: the parties' states are still checked when loaded
    try:
        saved = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise ConfigError(f"cannot resume: {path} is unreadable ({error})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"cannot resume: {path} is not a secsplit run record")
    for key in RESUME_FIELDS:
        if saved.get(key) != mine[key]:
            raise ConfigError(f"cannot resume: {path}: field {key} is {json.dumps(saved.get(key))[:80]}, this run has "
                              f"{json.dumps(mine[key])[:80]}: resume with the run's own settings (a changed or added "
                              f"setting is refused, not ignored) or start a new run")


def _checkpointing(args):
    from secsplit.errors import ConfigError
    from secsplit.training import Checkpointing

    directory = getattr(args, "checkpoint_dir", None)
    if directory is None:
        if getattr(args, "resume", False):
            raise ConfigError("--resume needs --checkpoint-dir DIR (where the interrupted run saved its state)")
        return None
    if args.resume:
        from secsplit.training import read_trainer_state

        if read_trainer_state(directory) is None:
            raise ConfigError(f"--resume: no saved training state in {directory} (run without --resume to start)")
    return Checkpointing(directory, every=args.checkpoint_every, resume=args.resume)


CONNECT_RETIRED = ("train --connect is retired: across processes every party runs from one run file with a [parties] "
                   "table, `secsplit serve --role client --config run.toml --certs DIR` on the client's host and "
                   "`--role server` on the server's (`secsplit launch run.toml` on one machine; docs/transport.md)")


def _print_summary(s: dict) -> None:
    for row in s["history"]:
        tasks = "".join(f"  {key[len('test_task_'):-len('_accuracy')]} {value:.4f}" for key, value in row.items()
                        if key.startswith("test_task_") and key.endswith("_accuracy"))
        print(f"epoch {row['epoch']:>3}  train loss {_num(row['train_loss'])}  train acc {_num(row['train_accuracy'])}  "
              f"test acc {_num(row['test_accuracy'])}{tasks}  ({row['wall_time_s']:.1f} s)")
    print(f"\n{s['topology']} split of {s['model']} on {s['dataset']} at cut(s) {', '.join(s['cuts'])}")
    for name, party in s["parties"].items():
        print(f"  {name:<8} segments {', '.join(party['segments'])}  ({party['parameters']:,} parameters)")
    for defense in s["defenses"]:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in defense["params"].items())
        print(f"  defense {defense['defense']}({params})" + (f"  epsilon {_epsilon(defense['epsilon'])}" if defense["epsilon"] else ""))
    if s.get("checkpoint"):
        print(f"  saved checkpoint {s['checkpoint']}")
    if s.get("leakage_probe"):
        p = s["leakage_probe"]
        print(f"leakage probe      dCor {p['dcor']:.3f} (biased; {p['dcor_chance']:.3f} for an independent release) / "
              f"dCor\u00b2 {p['dcor_unbiased']:.3f} (bias-corrected; "
              f"0 = independent) between {p['n']} test inputs and what the client releases for them")
    if s.get("stopped"):
        print(f"stopped early      {s['stopped']}")
    if s["test_accuracy"] is not None:
        print(f"test accuracy      {s['test_accuracy']:.4f}")
    print(f"client -> others   {_mb(s['client_bytes_sent'])} (training)")
    print(f"others -> client   {_mb(s['client_bytes_received'])} (training)")
    if s.get("transport"):
        t = s["transport"]
        print(f"over the network   {t['messages_sent']:,} exchanges with {s['parties']['server'].get('remote')}, "
              f"envelopes {_mb(t['wire_sent'])} sent / {_mb(t['wire_received'])} received "
              f"(framing {_mb(t['framing_sent'] + t['framing_received'])})")
    print(f"wall time          {s['wall_time_s']:.1f} s on {s['device']}")


def _num(value) -> str:
    return "   n/a" if value is None else f"{value:.4f}"


def _epsilon(eps: dict) -> str:
    if "per_label" in eps:
        return f"{eps['per_label']:.3g} per use of a label, {eps['composed']:.3g} over {eps['uses']} use(s) (label DP)"
    if "composed" in eps:
        return f"{eps['per_release']:.3g} per release, {eps['composed']:.3g} over {eps['releases']} epoch(s) (delta {eps['composed_delta']:.0e})"
    return f"{eps['prv']:.3g} (PRV) / {eps['rdp']:.3g} (RDP) at delta {eps['delta']:.0e}"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def _check_save_target(directory: str, topology) -> None:
    from pathlib import Path

    from secsplit.checkpoint import CheckpointError, check_savable

    check_savable(topology)
    if Path(directory).exists() and not Path(directory).is_dir():
        raise CheckpointError(f"cannot save checkpoint: {directory!r} exists and is not a directory")


def _save(args: argparse.Namespace, built, summary: dict):
    from secsplit.checkpoint import save_split_model

    d = built.description
    return save_split_model(
        built.topology, args.save, model_name=built.model_name, model_options=dict(d.model.options),
        dataset_name=d.data.name, dataset_seed=d.seed, model_seed=d.seed, input_shape=built.dataset.input_shape,
        num_classes=built.dataset.num_classes,
        metadata={"test_accuracy": summary["test_accuracy"], "epochs": d.epochs, "defenses": list(d.defenses),
                  "stopped": summary.get("stopped"), "run": d.to_dict()},
    )
