"""The ``secsplit`` command line: train split models, list components (audits come later).

Every bad name or value ends in a one-line error and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from secsplit.errors import SecsplitError

#: The model a data set gets when --model is not given.
DEFAULT_MODEL = {"mnist": "lenet", "digits": "mlp", "breast-cancer": "mlp", "breast-cancer-imbalanced": "mlp"}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secsplit", description="Privacy-focused split learning.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a split model in process and print its results")
    train.add_argument("--dataset", default="mnist", help="data set name (see `secsplit list`)")
    train.add_argument("--model", default=None, help="model name; default depends on the data set")
    train.add_argument("--topology", default="vanilla", help="vanilla, ushape, multihop, ... (see `secsplit list`)")
    train.add_argument("--cut", action="append", dest="cuts", metavar="NAME", help="a cut point; repeat for several (default: the model's suggestion)")
    train.add_argument("--epochs", type=_positive_int, default=5)
    train.add_argument("--batch-size", type=_positive_int, default=64)
    train.add_argument("--optimizer", default="adam", help="sgd, adam or adamw")
    train.add_argument("--lr", type=_positive_float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("list", help="show data sets, models with their cut points, and topologies")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from secsplit.data import load_dataset
    from secsplit.models import create_model
    from secsplit.optim import OptimizerSpec
    from secsplit.topologies import build_topology
    from secsplit.training import Trainer

    dataset = load_dataset(args.dataset, seed=args.seed)
    model_name = args.model or DEFAULT_MODEL.get(args.dataset, "mlp")
    model = create_model(model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=args.seed)
    optimizer = OptimizerSpec(args.optimizer, lr=args.lr)
    topology = build_topology(args.topology, model, cuts=args.cuts, optimizer=optimizer)
    trainer = Trainer(
        topology,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        progress=False if (args.quiet or args.json) else None,
    )
    report = trainer.fit(dataset)
    summary = {**report.summary, "model": model_name, "cuts": topology.cuts, "history": report.history}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0


def _print_summary(s: dict) -> None:
    for row in s["history"]:
        print(f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.4f}  train acc {row['train_accuracy']:.4f}  "
              f"test acc {row['test_accuracy']:.4f}  ({row['wall_time_s']:.1f} s)")
    print(f"\n{s['topology']} split of {s['model']} on {s['dataset']} at cut(s) {', '.join(s['cuts'])}")
    for name, party in s["parties"].items():
        print(f"  {name:<8} segments {', '.join(party['segments'])}  ({party['parameters']:,} parameters)")
    print(f"test accuracy      {s['test_accuracy']:.4f}")
    print(f"client -> others   {_mb(s['client_bytes_sent'])} (training)")
    print(f"others -> client   {_mb(s['client_bytes_received'])} (training)")
    print(f"wall time          {s['wall_time_s']:.1f} s on {s['device']}")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def cmd_list(args: argparse.Namespace) -> int:
    from secsplit.data import list_datasets
    from secsplit.models import create_model, list_models
    from secsplit.topologies import list_topologies

    print("data sets:")
    for name, description in list_datasets():
        print(f"  {name:<26} {description}")
    print("models (cut points for a 28x28 image, or 30 features for mlp):")
    for name, description in list_models():
        shape = (30,) if name == "mlp" else ((1, 28, 28) if name == "lenet" else (3, 32, 32))
        model = create_model(name, input_shape=shape, num_classes=10, seed=0)
        print(f"  {name:<26} {description}")
        print(f"  {'':<26} cuts: {', '.join(model.cut_points)}")
    print("topologies:")
    for name, description in list_topologies():
        print(f"  {name:<26} {description}")
    return 0


COMMANDS = {"train": cmd_train, "list": cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SecsplitError as error:
        print(f"secsplit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
