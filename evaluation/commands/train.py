"""`secsplit train`: train a split model in process and print accuracy, traffic and time."""

from __future__ import annotations

import argparse
import json

from secsplit.evaluation.commands.common import keyword_option, positive_float, positive_int
from secsplit.evaluation.commands.serve import add_connect_arguments, connect_link

#: The model a data set gets when --model is not given.
DEFAULT_MODEL = {"mnist": "lenet", "digits": "mlp", "breast-cancer": "mlp", "breast-cancer-imbalanced": "mlp"}


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train a split model in process and print its results")
    train.add_argument("--dataset", default="mnist", help="data set name (see `secsplit list`)")
    train.add_argument("--model", default=None, help="model name; default depends on the data set")
    train.add_argument("--topology", default="vanilla", help="vanilla, ushape, multihop, ... (see `secsplit list`)")
    train.add_argument("--cut", action="append", dest="cuts", metavar="NAME",
                       help="a cut point; repeat for several (default: the model's suggestion)")
    train.add_argument("--option", action="append", dest="options", metavar="KEY=VALUE", type=keyword_option, default=[],
                       help="a keyword of the topology, repeatable (e.g. clients=10, weights_via=server, merge=sum)")
    train.add_argument("--defense", action="append", dest="defenses", metavar="SPEC", default=[],
                       help="a defense as name:key=value,... e.g. nopeek:alpha=0.5 or noise:mech=laplace,scale=0.5,clip=1; "
                            "repeat to combine (see `secsplit list`)")
    train.add_argument("--label-source", default="data_owner", choices=["data_owner", "label_owner"],
                       help="who holds the labels in vanilla/multi-hop: the data owner sends them (default) or the server holds them")
    train.add_argument("--epochs", type=positive_int, default=5)
    train.add_argument("--batch-size", type=positive_int, default=64)
    train.add_argument("--optimizer", default="adam", help="sgd, adam or adamw")
    train.add_argument("--lr", type=positive_float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--save", default=None, metavar="DIR",
                       help="save the trained model as a checkpoint directory (one safetensors file per party; see `secsplit predict`)")
    resume = train.add_argument_group("training checkpoints (resume after a crash)")
    resume.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="save weights, optimizer and trainer state here every --checkpoint-every steps")
    resume.add_argument("--checkpoint-every", type=positive_int, default=50, metavar="STEPS", help="default 50")
    resume.add_argument("--resume", action="store_true",
                        help="continue from the last state in --checkpoint-dir (same settings; across machines the "
                             "server must run with its own --checkpoint-dir)")
    add_connect_arguments(train, what="train against a server party at this address (vanilla or ushape) instead of in process")
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from secsplit.data import load_dataset
    from secsplit.models import create_model
    from secsplit.optim import OptimizerSpec
    from secsplit.topologies import build_topology
    from secsplit.training import Trainer

    from secsplit.defenses import defense_from_spec

    defenses = [defense_from_spec(spec) for spec in args.defenses]
    dataset = load_dataset(args.dataset, seed=args.seed)
    model_name = args.model or DEFAULT_MODEL.get(args.dataset, "mlp")
    model = create_model(model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=args.seed)
    optimizer = OptimizerSpec(args.optimizer, lr=args.lr)
    checkpointing = _checkpointing(args)
    if getattr(args, "connect", None):
        topology = _connect(args, dataset, model_name, optimizer, checkpointing)
    else:
        from secsplit.topologies import TOPOLOGIES

        extra = {"model_name": model_name} if args.topology.startswith("vertical") else {}
        if args.topology in TOPOLOGIES and "seed" in TOPOLOGIES.parameters(args.topology):
            extra["seed"] = args.seed  # per-client models, partitions, extra heads: --seed governs them too
        extra.update(dict(getattr(args, "options", None) or []))
        topology = build_topology(args.topology, model, cuts=args.cuts, optimizer=optimizer, label_source=args.label_source,
                                  **extra)
    if getattr(args, "save", None):
        _check_save_target(args.save, topology)  # fail before training, not after
    trainer = Trainer(
        topology,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        progress=False if (args.quiet or args.json) else None,
        callbacks=defenses,
        checkpointing=checkpointing,
    )
    try:
        report = trainer.fit(dataset)
    finally:
        if hasattr(topology, "close"):
            topology.close()
    summary = {**report.summary, "model": model_name, "cuts": topology.cuts, "history": report.history,
               "defenses": [d.report() for d in defenses]}
    if getattr(args, "save", None):
        summary["checkpoint"] = str(_save(args, topology, model_name, dataset, summary))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0


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


def _connect(args, dataset, model_name: str, optimizer, checkpointing=None):
    """The client side of a session with a remote server party (vanilla or U-shape)."""
    from secsplit.errors import ConfigError
    from secsplit.remote import RemoteChainTopology, SessionSpec

    if args.label_source != "data_owner":
        raise ConfigError("across machines the client holds and sends the labels (--label-source data_owner)")
    spec = SessionSpec(model=model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes,
                       topology=args.topology, cuts=tuple(args.cuts or ()), seed=args.seed, optimizer=optimizer.to_dict(),
                       topology_options=dict(getattr(args, "options", None) or []))
    link = connect_link(args)
    run_id, resume_step = None, 0
    if checkpointing is not None and checkpointing.resume:
        from secsplit.training import read_trainer_state

        state = read_trainer_state(checkpointing.directory)  # present: _checkpointing checked it
        run_id, resume_step = state.get("topology"), state["global_step"]
        if not isinstance(run_id, str):
            raise ConfigError(f"--resume: {checkpointing.directory} holds an in-process run, not one across machines")
    if spec.topology == "vertical":
        from secsplit.remote.vertical import RemoteVerticalClient, sample_digest

        return RemoteVerticalClient(spec, link, party=args.name, samples=sample_digest(dataset.ids_train), run_id=run_id,
                                    resume_step=resume_step)
    return RemoteChainTopology(spec, link, run_id=run_id, resume_step=resume_step)


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


def _save(args: argparse.Namespace, topology, model_name: str, dataset, summary: dict):
    from secsplit.checkpoint import save_split_model

    return save_split_model(
        topology, args.save, model_name=model_name, model_options={}, dataset_name=args.dataset,
        dataset_seed=args.seed, model_seed=args.seed, input_shape=dataset.input_shape, num_classes=dataset.num_classes,
        metadata={"test_accuracy": summary["test_accuracy"], "epochs": args.epochs, "defenses": list(args.defenses),
                  "stopped": summary.get("stopped")},
    )
