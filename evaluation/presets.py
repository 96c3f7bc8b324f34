"""Built-in audits. ``quick`` is the README's main job (minutes on 2 cores); ``full`` is everything."""

from __future__ import annotations

from secsplit.errors import UnknownNameError

# Gaussian noise clipped near the activations' typical L2 norm (~25-30 for LeNet's shallow cuts)
CORE_DEFENSES = ["none", "noise:mech=gaussian,clip=30,scale=0.5", "noise:mech=gaussian,clip=30,scale=2",
                 "nopeek:alpha=0.5", "nopeek:alpha=2"]
LABEL_DEFENSES = ["none", "max-norm", "marvell:scale=1", "gradient-noise:scale=1"]
#: the quick preset's reconstruction attacks: white-box inversion from one start (the full preset tries three)
QUICK_RECONSTRUCTION = ["whitebox-inversion:max_targets=16,restarts=1", "inverse-network:aux_size=500,epochs=5,max_targets=16"]

PRESETS: dict[str, dict] = {
    "quick": {
        # Every run yields attack results (no run is only not_applicable). Defenses are swept where the
        # leak is worst (MNIST, vanilla, shallow cut); the other configurations show who else sees what:
        # U-shape's server, multi-hop's first hop, a deeper cut, and the label owner's gradients from the
        # client's seat (vanilla) and from the server's (U-shape: labels stay home, their gradients do not).
        # MNIST trains to convergence (the audit default: early stopping, patience 5, at most 40 epochs; test
        # accuracy ~0.96 undefended); the label experiment's 4 epochs are where the norm attack peaks
        "audit": {"name": "quick", "seeds": [0], "batch_size": 64, "probe_samples": 256},
        "experiment": [
            {"dataset": "mnist", "model": "lenet", "topologies": ["vanilla"], "cuts": {"vanilla": ["relu1"]},
             "defenses": CORE_DEFENSES, "attacks": QUICK_RECONSTRUCTION},
            {"dataset": "mnist", "model": "lenet", "topologies": ["vanilla", "ushape", "multihop"],
             "cuts": {"vanilla": ["pool2"], "multihop": ["pool1", "pool2"]},
             "defenses": ["none"], "attacks": QUICK_RECONSTRUCTION},
            {"dataset": "breast-cancer-imbalanced", "model": "mlp", "topologies": ["vanilla", "ushape"],
             "label_source": "label_owner", "batch_size": 32, "epochs": 4,
             "defenses": LABEL_DEFENSES, "attacks": ["norm-attack", "cosine-attack"]},
        ],
    },
    "full": {
        "audit": {"name": "full", "seeds": [0, 1, 2], "epochs": 5, "batch_size": 64, "probe_samples": 512},
        "experiment": [
            {"dataset": "mnist", "model": "lenet", "topologies": ["vanilla", "ushape", "multihop", "multihop-ushape"],
             "defenses": [*CORE_DEFENSES, "noise:mech=gaussian,clip=10,epsilon=2", "dpsgd:noise_multiplier=1.0",
                          "nopeek:alpha=0.1", "nopeek:alpha=1"],
             "attacks": ["whitebox-inversion", "inverse-network", "unsplit", "gradient-clustering"]},
            {"dataset": "mnist", "model": "lenet", "topologies": ["vanilla"],
             "cuts": {"vanilla": ["relu1"]}, "defenses": ["none", "nopeek:alpha=1"],
             "attacks": ["whitebox-inversion", "inverse-network", "unsplit"]},
            *({"dataset": "mnist", "model": "lenet", "topologies": ["vanilla"], "cuts": {"vanilla": [cut]},
               "defenses": ["none"], "attacks": ["whitebox-inversion", "inverse-network", "unsplit"]}
              for cut in ("pool1", "relu2", "pool2", "relu3")),
            {"dataset": "mnist", "model": "lenet", "topologies": ["vanilla", "ushape"], "label_source": "label_owner",
             "defenses": ["none", "label-dp:epsilon=1", "gradient-noise:scale=1"],
             "attacks": ["gradient-clustering", "model-completion"]},
            {"dataset": "breast-cancer-imbalanced", "model": "mlp", "topologies": ["vanilla", "ushape"],
             "label_source": "label_owner", "batch_size": 32, "epochs": 5,
             "defenses": [*LABEL_DEFENSES, "gradient-sparsification:keep=0.1", "label-dp:epsilon=1"],
             "attacks": ["norm-attack", "cosine-attack"]},
            {"dataset": "breast-cancer", "model": "mlp", "topologies": ["vanilla"], "label_source": "label_owner",
             "batch_size": 32, "defenses": LABEL_DEFENSES, "attacks": ["norm-attack", "cosine-attack"]},
            # issue 15: ExPLoit, direct label scoring, SDAR, FORA, GRN (docs/attacks.md)
            {"dataset": "digits", "model": "lenet", "topologies": ["vanilla", "ushape"], "label_source": "label_owner",
             "epochs": 10, "defenses": ["none", "gradient-noise:scale=1"],
             "attacks": ["exploit", "exploit:attacker=server", "direct-label", "direct-label:attacker=server"]},
            {"dataset": "breast-cancer", "model": "mlp", "topologies": ["vanilla"], "label_source": "label_owner",
             "epochs": 10, "defenses": LABEL_DEFENSES, "attacks": ["exploit"]},
            *({"dataset": "mnist", "model": "lenet", "topologies": ["vanilla"], "cuts": {"vanilla": [cut]},
               "defenses": ["none", "nopeek:alpha=1"], "attacks": ["sdar", "fora", "inverse-network", "unsplit"]}
              for cut in ("relu2", "pool2", "relu3")),
            {"dataset": "digits", "model": "lenet", "topologies": ["ushape"], "epochs": 15, "defenses": ["none"],
             "attacks": ["sdar"]},
            {"dataset": "breast-cancer", "model": "mlp", "topologies": ["vertical"], "label_source": "label_owner",
             "epochs": 10, "defenses": ["none", "noise:mech=gaussian,clip=10,scale=1"],
             "attacks": ["grn", "grn:observe=representation"]},
        ],
    },
}


#: ``standard``: the worst-case audit an auditor should sign: models trained until validation accuracy
#: stops improving (capped epochs), three seeds, tuned attacks from every seat.
PRESETS["standard"] = {
    # patience 5, at most 40 epochs: with patience 2 the noisy 400-image validation split stopped two of
    # three MNIST LeNets after 5 epochs at 0.914-0.933 test accuracy; training is ~0.5 s an epoch here,
    # the attacks and their tuning are what cost
    "audit": {"name": "standard", "seeds": [0, 1, 2], "epochs": 40, "batch_size": 64, "probe_samples": 256,
              "early_stopping": {"patience": 5}, "tune": True},
    "experiment": [
        {"data": "mnist", "model": "lenet", "topology": ["vanilla", "ushape", "multihop"],
         "cuts": {"vanilla": ["relu1"], "multihop": ["pool1", "pool2"]},
         "defenses": ["none", "noise:mech=gaussian,clip=30,scale=0.5", "nopeek:alpha=1"],
         # one start per trial: each tuned white-box trial is a full inversion (6 trials x 3 starts took
         # 133 s of a 230 s run on an idle machine); 3,000 steps fixed, lr and TV weight tuned: 6,000-step
         # trials made tuning 65% of the preset's time, and these cuts converge well before 3,000
         "attacks": ["whitebox-inversion:max_targets=16,restarts=1,steps=3000",
                     "inverse-network:aux_size=1000,epochs=10,max_targets=16"]},
        {"data": "breast-cancer-imbalanced", "model": "mlp",
         "topology": [{"name": "vanilla", "label_source": "label_owner"}, "ushape"], "batch_size": 32, "epochs": 30,
         "defenses": ["none", "max-norm", "marvell:scale=1"], "attacks": ["norm-attack", "cosine-attack"]},
        {"data": "digits", "model": "mlp", "topology": [{"name": "vanilla", "label_source": "label_owner"}, "ushape"],
         "batch_size": 32, "epochs": 30, "defenses": ["none", "gradient-noise:scale=1"],
         "attacks": ["gradient-clustering", "model-completion"]},
    ],
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise UnknownNameError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
