"""The per-client cost model (Vepakomma et al. 2018) against hand-computed closed forms, and its CLI."""

import json
import math

import pytest

from secsplit.efficiency import (
    PAPER_CLIENT_TFLOPS, efficiency_table, markdown_report, measure_model_costs, per_client_costs, split_ratios,
)
from secsplit.errors import ConfigError, UnknownNameError
from secsplit.evaluation.cli import main
from secsplit.models import create_model

D, H1, H2, C = 30, 16, 8, 3



def _by_method(rows):
    return {row["method"]: row for row in rows}


def test_tiny_mlp_costs_match_hand_formulas():
    model = create_model("mlp", input_shape=(D,), num_classes=C, seed=0, hidden=(H1, H2))
    costs = measure_model_costs(model, cut="relu1", name="tiny")
    n = D * H1 + H1 + H1 * H2 + H2 + H2 * C + C
    client_n = D * H1 + H1
    assert (costs.parameters, costs.client_parameters, costs.cut_size) == (n, client_n, H1)
    client_fps = 4 * D * H1  # forward + weight gradient; raw inputs need no gradient
    full_fps = 4 * D * H1 + 6 * (H1 * H2 + H2 * C)
    assert costs.client_flops_per_sample == pytest.approx(client_fps, rel=0.01)
    assert costs.full_flops_per_sample == pytest.approx(full_fps, rel=0.01)

    p, k, b, local_epochs = 1200, 4, 10, 2
    rows = _by_method(per_client_costs(costs, samples=p, clients=k, local_epochs=local_epochs, per_client_batch=b))
    assert rows["split"]["client_flops"] == pytest.approx(p / k * client_fps, rel=0.01)
    assert rows["fedavg"]["client_flops"] == pytest.approx(p / k * full_fps * local_epochs, rel=0.01)
    assert rows["large_batch_sgd"]["client_flops"] == pytest.approx(p / k * full_fps, rel=0.01)
    assert rows["split"]["client_bytes"] == 2 * (p // k) * H1 * 4 + 2 * client_n * 4
    assert rows["fedavg"]["client_bytes"] == 2 * n * 4
    assert rows["large_batch_sgd"]["client_bytes"] == 2 * n * 4 * math.ceil(p / (k * b))
    assert rows["large_batch_sgd"]["steps"] == 30
    assert rows["split"]["client_tflops"] == rows["split"]["client_flops"] / 1e12
    assert rows["fedavg"]["client_gb"] == 2 * n * 4 / 1e9


def test_measured_flops_agree_with_split_training_accounting():
    """The cost model's per-sample FLOPs times the samples equal what a vanilla split run meters."""
    from secsplit.data import load_dataset
    from secsplit.topologies import build_topology
    from secsplit.training import Trainer

    data = load_dataset("synthetic", kind="image", image_shape=(1, 28, 28), n_samples=50, num_classes=2, seed=0)
    model = create_model("lenet", input_shape=(1, 28, 28), num_classes=2, seed=0)
    costs = measure_model_costs(model, cut="pool1")
    topology = build_topology("vanilla", model, cuts=["pool1"])
    Trainer(topology, batch_size=10, epochs=1, seed=0, progress=False).fit(data)
    train = topology.flops.totals["train"]
    n = len(data.x_train)
    assert train["client"] == pytest.approx(n * costs.client_flops_per_sample, rel=1e-9)
    assert train["client"] + train["server"] == pytest.approx(n * costs.full_flops_per_sample, rel=1e-9)


def test_cifar_table_shapes_follow_the_paper():
    rows = efficiency_table(("vgg",), (100, 500))
    assert len(rows) == 6
    r100, r500 = (_by_method([r for r in rows if r["clients"] == k]) for k in (100, 500))
    for method in ("split", "fedavg", "large_batch_sgd"):
        # compute per client falls as 1/K, as in the paper (29.4 -> 5.89, 0.1548 -> 0.03)
        assert r100[method]["client_flops"] / r500[method]["client_flops"] == pytest.approx(5)
    assert PAPER_CLIENT_TFLOPS[100]["fedavg"] / PAPER_CLIENT_TFLOPS[500]["fedavg"] == pytest.approx(5, rel=0.01)
    # split learning's client computes a small part; FedAvg and large-batch SGD the whole model
    assert r100["split"]["client_flops"] < 0.1 * r100["fedavg"]["client_flops"]
    assert r100["fedavg"]["client_flops"] == r100["large_batch_sgd"]["client_flops"]
    assert r100["fedavg"]["client_bytes"] == r500["fedavg"]["client_bytes"]  # one model down and up
    ratios = split_ratios(rows)
    assert [r["clients"] for r in ratios] == [100, 500]
    assert ratios[0]["paper_flops_split_over_fl"] == pytest.approx(0.1548 / 29.4)
    text = markdown_report(rows)
    assert "smaller" in text and "ratios" in text and "| vgg | 100 | split learning |" in text


def test_bad_settings_are_config_errors():
    model = create_model("mlp", input_shape=(D,), num_classes=C, seed=0)
    with pytest.raises(UnknownNameError):
        measure_model_costs(model, cut="nowhere")
    costs = measure_model_costs(model)
    with pytest.raises(ConfigError, match="clients"):
        per_client_costs(costs, samples=10, clients=20)
    with pytest.raises(ConfigError):
        per_client_costs(costs, samples=10, clients=0)


def test_cli_writes_markdown_and_plot(tmp_path, capsys):
    out = tmp_path / "eff"
    assert main(["efficiency", "--models", "mlp,lenet", "--clients", "2,4", "--samples", "100", "--out", str(out),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["rows"]) == 2 * 2 * 3 and len(result["ratios"]) == 4
    assert "smaller" in result["note"]
    assert (out / "efficiency.md").read_text().startswith("# Per-client cost per epoch")
    assert (out / "efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["efficiency", "--models", "mlp", "--clients", "2", "--samples", "100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| mlp | 2 | split learning |" in printed and "split/FL client FLOPs" in printed


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["efficiency", "--models", "gpt", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'gpt'" in err[0]
    assert main(["efficiency", "--models", "mlp", "--cut", "nowhere", "--samples", "100", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]
