"""The report's numbers and story from hand-made audit rows (no training): chance levels, normalized
leak, the DCS score, findings, tables, plots that read cleanly, and the HTML page's structure."""

import json
import math
import re

import pytest

from secsplit.evaluation import findings, plots, tables
from secsplit.evaluation.leaks import data_facts, reconstruction_chance, row_leaks
from secsplit.evaluation.metrics import chance_margin, dcs_score, normalized_leak
from secsplit.evaluation.report import write_report
from secsplit.evaluation.results import append_row

from report_rows import WHITEBOX, image_rows, label_rows, row

@pytest.fixture(scope="module")
def records():
    return tables.table_records(label_rows() + image_rows())


# --- numbers -------------------------------------------------------------------------------------

def test_normalized_leak_is_zero_at_chance_and_one_at_a_full_leak():
    assert normalized_leak(0.55, chance=0.55) == 0.0
    assert normalized_leak(0.40, chance=0.55) == 0.0  # below chance is no leak, not a negative one
    assert normalized_leak(1.0, chance=0.55) == 1.0
    assert normalized_leak(0.775, chance=0.55) == pytest.approx(0.5)
    assert normalized_leak(0.0, chance=0.07, full=0.0) == 1.0  # MSE: lower leaks more


def test_dcs_on_normalized_axes_has_the_vflair_form():
    # u = (0.5 - 0.1) / (0.9 - 0.1) = 0.5, l = 0.2: 1 / (1 + sqrt(0.5 * 0.25 + 0.5 * 0.04))
    assert dcs_score(0.5, 0.2, utility_ref=0.9, utility_chance=0.1) == pytest.approx(1 / (1 + math.sqrt(0.145)))
    assert dcs_score(0.9, 0.0, utility_ref=0.9, utility_chance=0.1) == 1.0
    assert dcs_score(0.95, 0.0, utility_ref=0.9, utility_chance=0.1) == 1.0  # better than undefended is capped


def test_a_chance_level_model_never_scores_above_a_useful_one():
    """The issue's case: MNIST at 0.108 accuracy (chance 0.10 on 1000 test images) leaking nothing scored
    0.650, above the undefended model's 0.586."""
    margin = chance_margin(0.10, 1000)
    assert margin == pytest.approx(2 * math.sqrt(0.09 / 1000))
    undefended = dcs_score(0.866, 1.0, utility_ref=0.866, utility_chance=0.10, chance_margin=margin)
    at_chance = dcs_score(0.108, 0.0, utility_ref=0.866, utility_chance=0.10, chance_margin=margin)
    assert at_chance == 0.0 < undefended
    assert dcs_score(0.10, 0.0, utility_ref=0.866, utility_chance=0.10) == 0.0


def test_chance_levels_come_from_the_data():
    facts = data_facts(row())
    assert facts.utility == pytest.approx(0.9, abs=0.02)  # ~10% positives: always "benign" is right ~90%
    image = reconstruction_chance(image_rows()[0])
    assert 0 < image["ssim"] < 1 and image["mse"] > 0  # the mean image against the last 16 test images
    leaks = row_leaks(image_rows()[0])
    assert leaks["ssim"].chance == image["ssim"] and leaks["dcor_unbiased"].chance == 0.0
    assert leaks["dcor"].chance is None  # the biased estimator has no fixed chance level


# --- tables --------------------------------------------------------------------------------------

def test_tables_group_by_attack_and_seat_and_set_not_applicable_rows_apart(records):
    assert set(records) == {("norm-attack", "client"), ("cosine-attack", "client"), (WHITEBOX, "server")}
    assert all(r["status"] == "ok" for recs in records.values() for r in recs)
    apart = tables.set_apart(label_rows())
    (entry,) = apart["not_applicable"]
    assert entry["count"] == 2 and entry["attacks"] == ["cosine-attack @ client", "norm-attack @ client"]


def test_every_leakage_number_stands_beside_its_chance_level(records):
    markdown = tables.to_markdown(records, tables.set_apart(label_rows()))
    assert "| 1.000 (0.550) | 1.00 |" in markdown  # leak AUC (chance) and the normalized leak
    assert "0.990 (0.90" in markdown  # utility (chance)
    assert "- 2 x labels never leave the attacker's reach" in markdown
    csv_text = tables.to_csv(records)
    header = csv_text.splitlines()[0].split(",")
    assert {"utility_chance", "leak", "leak_auc_chance", "ssim_chance", "score"} <= set(header)


def test_scores_rank_a_useful_defense_above_one_at_chance_utility(records):
    norm = {r["defense"]: r for r in records[("norm-attack", "client")]}
    assert norm["marvell:scale=1"]["score"] > norm["none"]["score"]
    assert norm["gradient-noise:scale=1"]["score"] == 0.0  # utility 0.80 is below chance (0.90)


def test_several_seeds_are_shown_as_mean_and_sample_sd():
    import statistics

    auc = lambda value: {"leak_auc": value, "chance_auc": 0.55}  # noqa: E731
    rows = [row(seed=seed, utility=u, leakage=auc(a)) for seed, u, a in ((0, 0.95, 0.90), (1, 0.97, 0.80), (2, 0.96, 0.70))]
    ((group, (record,)),) = tables.table_records(rows).items()
    assert record["seeds"] == 3 and record["utility"] == pytest.approx(0.96)
    assert record["leak_auc_sd"] == pytest.approx(statistics.stdev([0.90, 0.80, 0.70]))  # 0.1
    markdown = tables.to_markdown({group: [record]})
    assert "| 3 | 0.960 \u00b1 0.010 (0.90" in markdown and "0.800 \u00b1 0.100 (0.550)" in markdown
    single = tables.to_markdown(tables.table_records(rows[:1]))
    assert "\u00b1" not in single.split("Each value")[0] and "| seeds |" not in single  # one seed: no spread shown
    assert "leak_auc_sd" in tables.to_csv({group: [record]}).splitlines()[0]


def test_rows_without_seat_or_tuning_from_old_results_files_still_tabulate():
    old = row(leakage={"leak_auc": 0.9, "chance_auc": 0.55})
    del old["seat"], old["run"]
    recs = tables.table_records([old])
    assert list(recs) == [("norm-attack", None)] and recs[("norm-attack", None)][0]["leak"] == pytest.approx(0.778, abs=1e-3)


def test_tuned_settings_are_shown():
    tuned = row(leakage={"leak_auc": 0.9, "chance_auc": 0.55}, tuning={"best_params": {"lr": 0.01}, "trials": 8})
    (record,) = tables.table_records([tuned])[("norm-attack", "client")]
    assert record["tuning"] == "lr=0.010 (best of 8)"


# --- findings ------------------------------------------------------------------------------------

def test_findings_come_worst_first_and_name_attack_seat_metric_chance_and_threat(records):
    found = findings.findings(records)
    assert [f.title for f in found][:2] == ["breast-cancer-imbalanced \u00b7 mlp \u00b7 vanilla \u00b7 cut relu1",
                                             "digits \u00b7 mlp \u00b7 vanilla \u00b7 cut relu1"]
    assert [f.leak for f in found] == sorted((f.leak for f in found), reverse=True)
    worst = found[0].worst
    assert "norm-attack from the client seat" in worst and "leak AUC 1.000 against a chance level of 0.550" in worst
    assert "honest-but-curious client" in worst


def test_best_defense_respects_the_utility_budget_and_states_its_cost(records):
    labels = findings.findings(records)[0]
    # gradient noise leaks least but costs 15 points; marvell costs 1 point and is the pick
    assert labels.defense.startswith("Best defense within a utility budget of 5 points") and "marvell:scale=1" in labels.defense
    assert "from 1.00 to 0.33" in labels.defense  # the worst over both attacks: cosine, (0.70 - 0.55) / 0.45
    assert "costs 1.0 points of utility (0.980 vs 0.990 undefended" in labels.cost
    assert "no formal (epsilon) guarantee" in labels.cost
    images = next(f for f in findings.findings(records) if f.configuration["topology"] == "vanilla"
                  and f.configuration["dataset"] == "digits")
    assert "noise:mech=gaussian,clip=30,scale=1" in images.defense or "No defense tried" in images.defense
    assert images.data["best_defense"]["within_budget"] is (images.data["best_defense"]["utility"] >= 0.85)


def test_when_nothing_within_budget_helps_the_cheapest_defense_that_does_is_named():
    ssim = lambda value: {"ssim": value, "num_targets": 16}  # noqa: E731
    rows = [row(WHITEBOX, seat="server", dataset="digits", utility=0.9, leakage=ssim(0.99)),
            row(WHITEBOX, seat="server", dataset="digits", defense="nopeek:alpha=1", utility=0.9, leakage=ssim(0.99)),
            row(WHITEBOX, seat="server", dataset="digits", defense="noise:scale=1", utility=0.8, leakage=ssim(0.8)),
            row(WHITEBOX, seat="server", dataset="digits", defense="noise:scale=9", utility=0.1, leakage=ssim(0.6))]
    (finding,) = findings.findings(tables.table_records(rows))
    assert finding.defense.startswith("No defense tried within a utility budget of 5 points (utility at least 0.850) "
                                      "lowers the worst leak meaningfully (1 tried; the least leaky, nopeek:alpha=1")
    assert "outside the budget, the cheapest that does, noise:scale=1, takes it to" in finding.defense
    assert "at a cost of 10.0 points of utility" in finding.defense


def test_a_model_indistinguishable_from_chance_gets_a_caution():
    rows = [row(utility=0.93, leakage={"leak_auc": 0.9, "chance_auc": 0.55})]  # 80 test samples, chance 0.90
    (finding,) = findings.findings(tables.table_records(rows))
    assert finding.caution.startswith("Caution: even undefended, utility 0.930 is within two standard errors of chance")
    assert finding.to_dict()["sentences"][-1] == finding.caution


def test_settings_a_frontier_searched_join_the_findings(records):
    frontier = {"configuration": "breast-cancer-imbalanced mlp vanilla relu1", "budget": 0.01,
                "rows": [{"attack": "norm-attack", "chance": 0.55}, {"attack": "cosine-attack", "chance": 0.55}],
                "points": [{"defense": "none", "family": "none", "utility": 0.99,
                            "leakage": {"norm-attack": {"mean": 1.0}, "cosine-attack": {"mean": 0.9}}},
                           {"defense": "marvell:scale=4", "family": "marvell", "utility": 0.985,
                            "leakage": {"norm-attack": {"mean": 0.58}, "cosine-attack": {"mean": 0.60}}}]}
    labels = findings.findings(records, frontier=frontier)[0]
    assert "marvell:scale=4 (found by the frontier search)" in labels.defense and "from 1.00 to 0.11" in labels.defense
    # judged by the frontier's attacks only, and the finding says which
    assert "the attacks it was searched against (cosine-attack, norm-attack)" in labels.defense
    assert "other attacks were not rerun on it" in labels.defense
    assert "the frontier search records no epsilon" in labels.cost
    other = findings.findings(records, frontier={**frontier, "configuration": "digits mlp vanilla relu1"})[0]
    assert "frontier" not in other.defense


def test_labels_the_protocol_sends_in_the_clear_are_a_finding_of_their_own(tmp_path):
    ssim = {"ssim": 0.99, "num_targets": 16}
    sent = [row(WHITEBOX, seat="server", dataset="digits", leakage=ssim, labels_sent=["client -> server"])]
    (finding,) = findings.findings(tables.table_records(sent))
    assert finding.exposure.startswith("Labels: every training label is sent in the clear (client -> server)")
    assert finding.to_dict()["sentences"][1] == finding.exposure  # right after the worst attack
    kept = [row(WHITEBOX, seat="server", dataset="digits", leakage=ssim, labels_sent=[])]
    assert findings.findings(tables.table_records(kept))[0].exposure == ""
    results = tmp_path / "results.jsonl"
    append_row(results, sent[0])
    html = write_report(results, tmp_path)["html"].read_text()
    assert "<p class='exposure'>Labels: every training label is sent in the clear (client -&gt; server)" in html


def test_a_configuration_without_defenses_says_so(records):
    ushape = next(f for f in findings.findings(records) if f.configuration["topology"] == "ushape")
    assert ushape.defense == "No defense was tried on this configuration."


# --- plots ---------------------------------------------------------------------------------------

def test_varying_parameter_is_the_one_that_changes_not_the_first():
    assert plots.varying_parameter(["noise:mech=gaussian,clip=30,scale=0.5", "noise:mech=gaussian,clip=30,scale=2"]) == "scale"
    assert plots.varying_parameter(["max-norm"]) is None


def test_figures_have_no_overlapping_or_clipped_text(records):
    figures = {"scatter": plots.privacy_utility_figure(records), "strength": plots.strength_figure(records)}
    for name, fig in figures.items():
        assert fig is not None, name
        assert plots.layout_problems(fig) == [], name
        plots.plt.close(fig)


def test_strength_uses_a_log_axis_when_the_parameter_spans_decades(records):
    fig = plots.strength_figure(records)
    leak_ax = fig.axes[0]
    assert leak_ax.get_xscale() == "log" and leak_ax.get_title() == "noise: scale varies"
    assert any(line.get_linestyle() == "--" for line in leak_ax.get_lines())  # the undefended level
    plots.plt.close(fig)


def test_cut_depth_draws_one_line_per_topology():
    ssim = {"ssim": 0.9, "num_targets": 16}
    rows = [row(WHITEBOX, seat="server", dataset="digits", topology=t, cuts=c, leakage=ssim)
            for t, c in (("vanilla", ("relu1",)), ("vanilla", ("relu2",)), ("ushape", ("relu1", "relu2")))]
    fig = plots.cut_depth_figure(tables.table_records(rows), lambda record: ["relu1", "linear1", "relu2"])
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert len(ax.get_lines()) == 2  # vanilla (two depths) and U-shape (one), never joined
    assert plots.layout_problems(fig) == []
    plots.plt.close(fig)


def test_layout_check_catches_overlapping_titles():
    fig, axes = plots.plt.subplots(1, 2, figsize=(3, 2))
    for ax in axes:
        ax.set_title("a title far too long for a panel this narrow to hold")
    assert any(p.startswith("overlap") or p.startswith("clipped") for p in plots.layout_problems(fig))
    plots.plt.close(fig)


# --- the page ------------------------------------------------------------------------------------

def test_html_opens_with_findings_and_needs_no_network(tmp_path):
    results = tmp_path / "results.jsonl"
    for r in label_rows() + image_rows():
        append_row(results, r)
    written = write_report(results, tmp_path / "out")
    page = written["html"].read_text()
    assert page.index("id='findings'") < page.index("id='plots'") < page.index("id='results'") < page.index("id='apart'")
    assert "norm-attack from the client seat" in page[page.index("id='findings'"):page.index("id='reading'")]
    assert "<details class='not_applicable'><summary>Not applicable: 2 rows, 1 distinct reason</summary>" in page
    assert not re.search(r"(src|href)=['\"]?https?:", page)  # everything inline: no CDN, no fonts, no network
    assert "VFLAIR" in page and "&beta; = 0.5" in page  # the score is named and its parameters defined
    assert page.count("<table class='results'>") == 3
    assert json.loads(json.dumps(written["findings"]))[0]["worst_leak"]["attack"] == "norm-attack"
