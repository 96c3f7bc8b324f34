"""The per-client cost model (Vepakomma et al. 2018) against hand-computed closed forms, and its CLI."""

import json
import math

import pytest

from secsplit.efficiency import (
    PAPER_CLIENT_TFLOPS, crossover_clients, efficiency_table, markdown_report, measure_cut_costs, measure_model_costs,
    per_client_costs, split_ratios,
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


def test_input_gradient_meta_device_and_several_cuts_match_hand_formulas():
    model = create_model("mlp", input_shape=(D,), num_classes=C, seed=0, hidden=(H1, H2))
    cpu = measure_cut_costs(model, ["relu1", "relu2"])
    meta = measure_cut_costs(model, ["relu1", "relu2"], device="meta")
    assert cpu == meta  # counting needs shapes only
    first, second = cpu
    assert first.client_input_grad_flops_per_sample == pytest.approx(2 * D * H1)  # x's gradient: one more matmul
    assert second.client_input_grad_flops_per_sample == pytest.approx(2 * D * H1)  # only the first layer's
    assert second.client_flops_per_sample == pytest.approx(4 * D * H1 + 6 * H1 * H2)
    assert (second.cut_size, second.client_parameters) == (H2, D * H1 + H1 + H1 * H2 + H2)
    assert next(model.parameters()).device.type == "cpu"  # the model itself is not moved


def test_fixed_global_batch_and_no_weight_passing_follow_the_formulas():
    costs = measure_model_costs(create_model("mlp", input_shape=(D,), num_classes=C, seed=0, hidden=(H1, H2)),
                                cut="relu1")
    p, k, n = 1200, 4, costs.parameters
    rows = _by_method(per_client_costs(costs, samples=p, clients=k, global_batch=500, weights_passed=False))
    assert rows["large_batch_sgd"]["steps"] == 3 and rows["large_batch_sgd"]["global_batch"] == 500
    assert rows["large_batch_sgd"]["client_bytes"] == 2 * n * 4 * 3  # ceil(1200 / 500) steps, whatever K is
    assert rows["split"]["client_bytes"] == 2 * (p // k) * H1 * 4
    with pytest.raises(ConfigError, match="global_batch"):
        per_client_costs(costs, samples=p, clients=k, global_batch=0)


@pytest.mark.parametrize("local_epochs,weights_passed", [(1, True), (2, True), (2, False)])
def test_crossover_is_where_split_bytes_meet_fedavg_bytes(local_epochs, weights_passed):
    q = 4  # a narrow first layer: the client holds 124 of the 4,799 parameters
    costs = measure_model_costs(create_model("mlp", input_shape=(D,), num_classes=C, seed=0, hidden=(q, 64, 64)),
                                cut="relu1")
    p, n, held = 100_000, costs.parameters, costs.client_parameters if weights_passed else 0
    assert (n, costs.client_parameters) == (4799, 124)
    k_star = crossover_clients(costs, samples=p, local_epochs=local_epochs, weights_passed=weights_passed)
    assert k_star == pytest.approx(p * q / (n / local_epochs - held))
    for k, split_sends_less in ((math.floor(k_star), False), (math.ceil(k_star) + 1, True)):
        rows = _by_method(per_client_costs(costs, samples=p, clients=k, weights_passed=weights_passed))
        fedavg_per_epoch = rows["fedavg"]["client_bytes"] / local_epochs
        assert (rows["split"]["client_bytes"] < fedavg_per_epoch) is split_sends_less
    assert crossover_clients(costs, samples=p, local_epochs=2 * n / costs.client_parameters) == math.inf


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


# -- the paper's own table (secsplit.efficiency_paper): vgg16 and resnet50 counted on the meta device ----------
def _conv_flops(c_in, c_out, side):
    return 2 * 9 * c_in * c_out * side * side  # one 3x3 conv's forward, per sample


@pytest.fixture(scope="module")
def paper():
    from secsplit.efficiency_paper import paper_report

    return paper_report()


def test_vgg16_flops_are_the_closed_form_of_its_convolutions(paper):
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    sides = [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]
    forward = sum(_conv_flops(i, o, s) for i, o, s in zip([3, *widths], widths, sides)) + 2 * 512 * 10
    first = _conv_flops(3, 64, 32)
    vgg = paper["models"]["tflops"]
    assert vgg["full_flops_per_sample"] == 3 * forward - first  # backward: input and weight gradients, not the image's
    assert vgg["client_flops_per_sample"] == 2 * first and vgg["client_input_grad_flops_per_sample"] == first
    assert (vgg["cut"], vgg["cut_size"], vgg["client_parameters"]) == ("relu1", 64 * 32 * 32, 27 * 64 + 2 * 64)


def test_paper_cells_within_ten_percent_but_fedavg_bytes(paper):
    cells = {(c["table"], c["clients"], c["method"]): c for c in paper["cells"]}
    assert len(cells) == 12
    vgg, res = paper["models"]["tflops"], paper["models"]["gb"]
    full, client = vgg["full_flops_per_sample"], vgg["client_flops_per_sample"] + vgg["client_input_grad_flops_per_sample"]
    for k in (100, 500):  # the formulas of the module docstring, by hand: E = 30 and 23, R = 14, B = 20,000
        assert cells[("tflops", k, "fedavg")]["secsplit"] == pytest.approx(30 * 50_000 / k * full / 1e12)
        assert cells[("tflops", k, "split")]["secsplit"] == pytest.approx(30 * 50_000 / k * client / 1e12)
        assert cells[("gb", k, "split")]["secsplit"] == pytest.approx(23 * (2 * 50_000 / k * 65_536 + 2 * 1856) * 4 / 1e9)
        assert cells[("gb", k, "fedavg")]["secsplit"] == pytest.approx(14 * 2 * res["parameters"] * 4 / 1e9)
        assert cells[("gb", k, "large_batch_sgd")]["secsplit"] == pytest.approx(23 * 3 * 2 * res["parameters"] * 4 / 1e9)
    missed = sorted(key for key, c in cells.items() if not c["within"])
    assert missed == [("gb", 100, "fedavg"), ("gb", 500, "fedavg")]
    assert all(abs(c["ratio"] - 1) <= 0.1 for key, c in cells.items() if key not in missed)
    assert all(abs(cells[key]["ratio"] - 1) < 0.12 for key in missed)
    assert len(paper["unmatched"]) == 1 and "1.1/0.9" in paper["unmatched"][0]


def test_implied_settings_solve_the_formulas(paper):
    imp = paper["implied"]
    full = paper["models"]["tflops"]["full_flops_per_sample"]
    assert imp["tflops"]["epochs_from_fedavg_and_large_batch"][100] == pytest.approx(29.4e12 / (500 * full))
    assert imp["tflops"]["split_share_wanted"][100] == pytest.approx(0.1548 / 29.4)
    rounds = imp["gb"]["fedavg_rounds"]
    assert rounds[100] / rounds[500] == pytest.approx(3 / 2.4)
    assert imp["gb"]["fedavg_best_single_miss"] == pytest.approx((3 - 2.4) / (3 + 2.4))  # the best single R's miss
    by_cut = {row["cut"]: row for row in imp["gb"]["split_by_cut"]}
    assert by_cut["relu1"]["epochs_from_k100"] == pytest.approx(6e9 / ((2 * 500 * 65_536 + 2 * 1856) * 4))
    assert by_cut["relu1"]["drop_100_to_500"] == pytest.approx(5, rel=1e-3)  # as the paper's 6 -> 1.2 GB
    assert by_cut["layer3_5"]["drop_100_to_500"] < 3  # a deep cut's weight passing would flatten the drop
    assert imp["epochs_ratio_between_tables"] > 1.1 / 0.9


def test_paper_crossover_closed_form(paper):
    x = paper["crossover"]
    n = paper["models"]["gb"]["parameters"]
    assert n == 23_705_252
    assert x["clients"] == pytest.approx(50_000 * 65_536 / (n * 14 / 23 - 1856))
    assert 200 < x["clients"] < 250 and x["paper_clients_range"] == pytest.approx((200, 250))


def test_assumptions_parse_and_reject_bad_values():
    from secsplit.efficiency_paper import Assumptions, parse_assumptions

    assert parse_assumptions(["fedavg_rounds=16", "client_input_grad=false", "cut=relu1"]) == Assumptions(
        fedavg_rounds=16, client_input_grad=False)
    for bad, match in ((["rounds=3"], "bad assumption"), (["fedavg_rounds=0"], "positive integer"),
                       (["weights_passed=maybe"], "true or false")):
        with pytest.raises(ConfigError, match=match):
            parse_assumptions(bad)


def test_cli_paper_writes_table_and_plot(tmp_path, capsys):
    out = tmp_path / "paper"
    assert main(["efficiency", "--paper", "--out", str(out), "--json", "--assume", "client_input_grad=false"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["assumptions"]["client_input_grad"] is False
    split = [c for c in result["cells"] if c["table"] == "tflops" and c["method"] == "split"]
    assert all(c["ratio"] < 0.75 for c in split)  # the strict count misses the paper's split cells by ~30%
    assert any(note.startswith("Split TFLOPs") for note in result["unmatched"])
    assert (out / "paper.md").read_text().startswith("# Vepakomma et al. 2018")
    assert (out / "paper.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["efficiency", "--paper", "--out", str(out)]) == 0
    assert "| client GB, resnet50 CIFAR-100 | 500 | split learning | 1.206 | 1.2 | 1.005 |" in capsys.readouterr().out
    for argv, message in ((["--paper", "--models", "vgg"], "drop --models"), (["--assume", "cut=relu1"], "--paper only"),
                          (["--paper", "--assume", "cut=pool1"], "not a candidate cut of resnet50")):
        assert main(["efficiency", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
