"""Hand-made audit rows for the report tests: what the runner writes, without training anything."""

WHITEBOX = "whitebox-inversion:max_targets=16"


def row(attack="norm-attack", *, seat="client", dataset="breast-cancer-imbalanced", model="mlp", topology="vanilla",
        cuts=("relu1",), defense="none", status="ok", utility=0.99, leakage=None, epsilon=None, seed=0, **extra):
    """An audit row as the runner writes it (only the fields the report reads)."""
    key = "|".join(map(str, (attack, seat, dataset, topology, cuts, defense, seed)))
    out = {"config_hash": key, "attack": attack, "seat": seat, "status": status, "seed": seed,
           "training": {"dataset": dataset, "model": model, "topology": topology, "cuts": list(cuts), "defense": defense},
           "run": {"data": {"source": dataset}, "seed": seed}, "topology": topology, "cuts": list(cuts),
           "utility": utility, "dcor": 0.9, "dcor_unbiased": 0.8, "dcor_n": 64, "epsilon": epsilon,
           "bytes": {"client": {"bytes_sent": 2_000_000}, "server": {"bytes_sent": 1_000_000}}, "train_wall_time_s": 2.0}
    if status == "ok" and leakage is not None:
        out["leakage"] = leakage
    return {**out, **extra}


def label_rows():
    """Label attacks on an imbalanced set: undefended leaks fully; marvell stops it within budget; noise
    stops it too but at chance utility; and a not-applicable seat."""
    auc = lambda value: {"leak_auc": value, "chance_auc": 0.55}  # noqa: E731
    return [
        row(leakage=auc(1.0)),
        row(defense="marvell:scale=1", utility=0.98, leakage=auc(0.60)),
        row(defense="gradient-noise:scale=1", utility=0.80, leakage=auc(0.55)),
        row(attack="cosine-attack", leakage=auc(0.90)),
        row(attack="cosine-attack", defense="marvell:scale=1", utility=0.98, leakage=auc(0.70)),
        row(attack="cosine-attack", defense="gradient-noise:scale=1", utility=0.80, leakage=auc(0.56)),
        row(topology="ushape", seat="client", status="not_applicable",
            reason="labels never leave the attacker's reach: the client holds them in U-shape"),
        row(attack="cosine-attack", topology="ushape", seat="client", status="not_applicable",
            reason="labels never leave the attacker's reach: the client holds them in U-shape"),
    ]


def image_rows():
    """Reconstruction on digits: a shallow vanilla cut leaks more than U-shape; noise swept over scale."""
    ssim = lambda value: {"ssim": value, "psnr": 20.0, "mse": 0.01, "num_targets": 16}  # noqa: E731
    rows = [row(WHITEBOX, seat="server", dataset="digits", cuts=("relu1",), utility=0.9, leakage=ssim(0.99)),
            row(WHITEBOX, seat="server", dataset="digits", topology="ushape", cuts=("relu1", "relu2"), utility=0.9,
                leakage=ssim(0.80))]
    for scale, value, utility in ((0.1, 0.95, 0.9), (1, 0.7, 0.85), (10, 0.6, 0.2)):
        rows.append(row(WHITEBOX, seat="server", dataset="digits", defense=f"noise:mech=gaussian,clip=30,scale={scale}",
                        utility=utility, leakage=ssim(value), epsilon={"composed": 100 / scale}))
    return rows
