"""`secsplit list`: the data sets, models with their cut points, and topologies secsplit knows."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    sub.add_parser("list", help="show data sets, models with their cut points, and topologies").set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
    from secsplit.topologies import TOPOLOGIES

    print("topologies (train --topology NAME --option key=value ...):")
    internal = {"model", "cuts", "channel", "optimizer", "label_source", "model_name", "kwargs"}
    for name, description in list_topologies():
        options = [p for p in TOPOLOGIES.parameters(name) if p not in internal]
        print(f"  {name:<26} {description}")
        if options:
            print(f"  {'':<26} options: {', '.join(options)}")
    from secsplit.defenses import list_defenses

    from secsplit.attacks import list_attacks

    print("attacks (threat model):")
    for name, threat in list_attacks():
        print(f"  {name:<26} {threat}")
    print("defenses (--defense name:key=value,...):")
    for name, description, params in list_defenses():
        print(f"  {name:<26} {description}")
        print(f"  {'':<26} parameters: {', '.join(params) or '(none)'}")
    return 0


