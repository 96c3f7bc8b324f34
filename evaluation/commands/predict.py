"""`secsplit predict`: split inference with a saved checkpoint; prints accuracy and traffic."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time

from secsplit.evaluation.commands.common import positive_int
from secsplit.evaluation.commands.serve import add_connect_arguments, connect_link


def add_parser(sub) -> None:
    predict = sub.add_parser("predict", help="run split inference with a checkpoint saved by `secsplit train --save`")
    predict.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory (from `secsplit train --save DIR`)")
    predict.add_argument("--data", "--dataset", dest="dataset", default=None, metavar="SOURCE",
                         help="built-in data set or file; default: the data the checkpoint was trained on (a new file "
                              "keeps the recorded options, e.g. its label column)")
    predict.add_argument("--split", default="test", choices=["test", "train"], help="which split to predict (default: test)")
    predict.add_argument("--seed", type=int, default=None, help="data split seed; default: the seed stored in the checkpoint")
    predict.add_argument("--limit", type=positive_int, default=None, metavar="N", help="predict only the first N samples")
    predict.add_argument("--batch-size", type=positive_int, default=1024, help="samples per split-inference request batch")
    predict.add_argument("--device", default="auto", help="auto, cpu or cuda")
    predict.add_argument("--output", default=None, metavar="FILE.csv", help="write sample_id,predicted_class rows to this CSV file")
    predict.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    add_connect_arguments(predict, what="send activations to `secsplit serve --role inference` at this address; "
                                        "only the client's weights are read from --checkpoint")
    predict.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from secsplit.checkpoint import load_split_model
    from secsplit.data import load_data
    from secsplit.errors import ConfigError
    from secsplit.inference import SplitInference
    from secsplit.training import resolve_device

    device = resolve_device(args.device)
    remote = None
    if getattr(args, "connect", None):
        topology = remote = _connect(args)
    else:
        topology = load_split_model(args.checkpoint)
    manifest = topology.checkpoint.manifest
    data, seed = _data_source(args, manifest)
    name = data.name
    dataset = load_data(data.name, seed=seed, **data.options)
    if tuple(dataset.input_shape) != tuple(manifest["input_shape"]) or dataset.num_classes != manifest["num_classes"]:
        raise ConfigError(f"data set {name!r} has inputs {tuple(dataset.input_shape)} and {dataset.num_classes} classes, "
                          f"the checkpoint's model expects {tuple(manifest['input_shape'])} and {manifest['num_classes']}")
    x, y, ids = (getattr(dataset, f"{p}_{args.split}") for p in ("x", "y", "ids"))
    if args.limit is not None:
        x, y, ids = x[:args.limit], y[:args.limit], ids[:args.limit]

    topology.to(device)
    inference = SplitInference(topology, batch_size=args.batch_size)
    start = time.perf_counter()
    try:
        predicted = inference.predict_classes(x).cpu()
    finally:
        if remote is not None:
            remote.close()
    wall = time.perf_counter() - start
    request = inference.last_request
    samples = int(len(y))
    correct = int((predicted == y).sum())
    if args.output:
        _write_csv(args.output, ids, predicted)

    summary = {
        "checkpoint": str(args.checkpoint),
        "dataset": name,
        "split": args.split,
        "seed": seed,
        "model": manifest["model"]["name"],
        "topology": manifest["topology"]["name"],
        "cuts": manifest["topology"]["cuts"],
        "samples": samples,
        "correct": correct,
        "accuracy": correct / samples if samples else None,
        "client_bytes_sent": request.bytes_sent,
        "client_bytes_received": request.bytes_received,
        "traffic": request.as_dict(),
        "batches": request.batches,
        "wall_time_s": wall,
        "device": str(device),
        "output": args.output,
    }
    if remote is not None:
        summary["server"] = args.connect
        summary["transport"] = remote.link.stats.as_dict()
    defenses = (manifest.get("metadata") or {}).get("defenses") or []
    if defenses:
        summary["note"] = "trained with defense(s) " + ", ".join(map(str, defenses)) + "; inference runs without them"
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, topology.data_owner)
    return 0


def _data_source(args, manifest: dict):
    """The data to predict and its split seed: the run the checkpoint records, ``--data``/``--seed`` overriding.

    A new file given with ``--data`` keeps the recorded run's data options (label column, features, ...),
    so a fresh export of the same table predicts without repeating them.
    """
    from secsplit.description import Component
    from secsplit.errors import ConfigError

    run = (manifest.get("metadata") or {}).get("run") or {}
    saved = manifest.get("dataset") or {}
    recorded = Component.parse(run.get("data") or saved.get("name"), where="checkpoint data", name_key="source")
    if args.dataset and args.dataset != recorded.name:
        recorded = Component(args.dataset, recorded.options)
    if recorded.name is None:
        raise ConfigError("the checkpoint does not record its data set; pass --data SOURCE")
    seed = args.seed if args.seed is not None else saved.get("seed")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
    return recorded, seed


def _connect(args):
    """The checkpoint's client segments here, its server segments behind ``args.connect``."""
    from secsplit.checkpoint import load_split_model
    from secsplit.remote.serving import InferenceClient

    return InferenceClient(load_split_model(args.checkpoint, parties="client"), connect_link(args))


def _write_csv(path: str, ids, predicted) -> None:
    """Write sample_id,predicted_class rows, atomically (temp file + rename)."""
    from secsplit.atomic import atomic_write
    from secsplit.errors import ConfigError

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["sample_id", "predicted_class"])
    writer.writerows(zip(ids.tolist(), predicted.tolist()))
    try:
        atomic_write(path, buffer.getvalue().encode("utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot write {path!r}: {error.strerror or error}") from None


def _print_summary(s: dict, owner: str) -> None:
    print(f"{s['topology']} split of {s['model']} at cut(s) {', '.join(s['cuts'])}, checkpoint {s['checkpoint']}")
    accuracy = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
    print(f"{s['split']} accuracy      {accuracy}  ({s['correct']}/{s['samples']} on {s['dataset']})")
    print(f"{owner} -> others   {s['client_bytes_sent'] / 1e6:,.3f} MB (inference)")
    print(f"others -> {owner}   {s['client_bytes_received'] / 1e6:,.3f} MB (inference)")
    if s.get("transport"):
        t = s["transport"]
        print(f"server             {s['server']}: {t['messages_sent']:,} exchanges, envelopes "
              f"{t['wire_sent'] / 1e6:,.3f} MB sent / {t['wire_received'] / 1e6:,.3f} MB received")
    print(f"wall time          {s['wall_time_s']:.2f} s on {s['device']}")
    if s["output"]:
        print(f"predictions        {s['output']}")
    if s.get("note"):
        print(f"note: {s['note']}", file=sys.stderr)
