"""The run description: one schema for run files, CLI flags and audit grids; one builder."""

from __future__ import annotations

import json

import pytest

from secsplit.description import EarlyStopping, RunDescription, load_run_file
from secsplit.errors import ConfigError
from secsplit.evaluation.audit_config import build_audit_config
from secsplit.evaluation.build import build_run


def test_a_description_round_trips_through_its_canonical_dict_and_json():
    d = RunDescription.from_dict({"data": {"source": "digits"}, "model": {"name": "mlp", "hidden": [32]},
                                  "topology": {"name": "splitfed", "clients": 4, "label_source": "label_owner"},
                                  "defenses": ["nopeek:alpha=0.5"], "attacks": ["norm-attack"], "lr": 0.01,
                                  "epochs": 3, "seed": 7, "early_stopping": {"patience": 2}})
    again = RunDescription.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again == d and again.key() == d.key()
    assert d.label_source == "label_owner" and d.topology_options == {"clients": 4}
    assert d.optimizer_spec().lr == 0.01 and d.early_stopping == EarlyStopping(patience=2)


def test_shorthands_and_canonical_tables_give_the_same_description():
    short = RunDescription.from_dict({"dataset": "digits", "model": "mlp", "topology": "vanilla",
                                      "label_source": "label_owner", "lr": 0.002})
    long = RunDescription.from_dict({"data": {"source": "digits"}, "model": {"name": "mlp"},
                                     "topology": {"name": "vanilla", "label_source": "label_owner"},
                                     "optimizer": {"name": "adam", "lr": 0.002}})
    assert short == long


@pytest.mark.parametrize("raw, message", [
    ({"data": "nope"}, "not a built-in name"),
    ({"topology": "triangle"}, "unknown topology 'triangle'"),
    ({"model": "transformer"}, "unknown model 'transformer'"),
    ({"epochs": "ten"}, "epochs must be an integer"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"optimizer": {"name": "adam", "betas": 1}}, "unknown option(s) betas"),
    ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
    ({"topology": {"name": "vanilla", "label_source": "nobody"}}, "label_source must be one of"),
    ({"early_stopping": {"patience": 0}}, "patience must be a positive integer"),
    ({"lr": 0.1, "optimizer": {"lr": 0.2}}, "lr given both"),
])
def test_bad_descriptions_fail_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunDescription.from_dict(raw)


def test_a_run_file_in_toml_reads_like_the_dict(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('seed = 3\nepochs = 2\n[data]\nsource = "digits"\n[topology]\nname = "vertical"\nk = 3\n')
    d = load_run_file(path)
    assert d.seed == 3 and d.topology.name == "vertical" and d.topology_options == {"k": 3}
    with pytest.raises(ConfigError, match="config file not found"):
        load_run_file(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("seed = = 3")
    with pytest.raises(ConfigError, match="bad TOML"):
        load_run_file(tmp_path / "bad.toml")


def test_the_audit_grid_varies_any_field_including_topology_options_and_seeds():
    config = build_audit_config({
        "audit": {"seeds": [0, 1], "epochs": 2},
        "experiment": [{"data": "digits", "topology": ["vanilla", {"name": "splitfed", "clients": [10, 100]}],
                        "defenses": ["none", ["nopeek:alpha=1", "noise:scale=1,clip=1"]],
                        "attacks": ["norm-attack", "cosine-attack"]}]})
    grid = {(r.description.seed, r.description.topology.name, r.description.topology_options.get("clients"),
             r.description.defenses) for r in config.runs}
    assert len(config.runs) == len(grid) == 2 * 3 * 2
    assert (1, "splitfed", 100, ("nopeek:alpha=1", "noise:scale=1,clip=1")) in grid
    assert all(r.description.epochs == 2 and r.attacks == ("norm-attack", "cosine-attack") for r in config.runs)
    # one row key per attack, distinct across the grid
    keys = [k for r in config.runs for k in r.row_keys().values()]
    assert len(set(keys)) == len(keys)


def test_list_valued_keys_take_a_list_of_lists_for_a_grid():
    one = build_audit_config({"experiment": [{"data": "mnist", "topology": "ushape", "cuts": ["pool1", "relu4"]}]})
    assert [r.description.cuts for r in one.runs] == [("pool1", "relu4")]
    two = build_audit_config({"experiment": [{"data": "mnist", "topology": "vanilla", "cuts": [["relu1"], ["pool2"]]}]})
    assert [r.description.cuts for r in two.runs] == [("relu1",), ("pool2",)]
    hidden = build_audit_config({"experiment": [{"data": "digits", "model": {"name": "mlp", "hidden": [[16], [64, 32]]}}]})
    assert [r.description.model.options["hidden"] for r in hidden.runs] == [[16], [64, 32]]


def test_per_topology_cuts_and_legacy_keys_still_read():
    config = build_audit_config({"audit": {"lr": 0.01}, "experiment": [
        {"dataset": "mnist", "topologies": ["vanilla", "ushape"], "cuts": {"vanilla": ["relu1"]},
         "label_source": "label_owner"}]})
    cuts = {r.description.topology.name: r.description.cuts for r in config.runs}
    assert cuts == {"vanilla": ("relu1",), "ushape": None}
    assert all(r.description.label_source == "label_owner" and r.description.optimizer.options["lr"] == 0.01
               for r in config.runs)


@pytest.mark.parametrize("raw, message", [
    ({"experiment": [{"data": "digits", "defenses": ["nopeek:alpha=abc"]}]}, "nopeek: alpha must be a number"),
    ({"experiment": [{"data": "digits", "defenses": ["shield"]}]}, "unknown defense 'shield'"),
    ({"experiment": [{"data": "digits", "attacks": ["psychic"]}]}, "unknown attack 'psychic'"),
    ({"experiment": [{"data": "digits", "topology": "vanilla", "cuts": {"ushape": ["relu1"]}}]}, "not in the grid"),
    ({"experiment": [{"data": "digits", "topolgy": "vanilla"}]}, "unknown key(s) topolgy"),
    ({"audit": {"seeds": "0"}, "experiment": [{"data": "digits"}]}, "seeds must be a non-empty list"),
    ({"audit": {}}, "needs at least one [[experiment]]"),
])
def test_bad_audit_files_fail_before_training_naming_the_experiment_and_key(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        build_audit_config(raw, origin="mine.toml")


def test_the_builder_passes_the_seed_to_every_seeded_part():
    """Partitions, per-client models and defenses follow the run's seed (not a fixed 0)."""
    def built(seed):
        d = RunDescription.from_dict({"data": "digits", "topology": {"name": "splitfed", "clients": 3},
                                      "defenses": ["gradient-noise:scale=1"], "seed": seed, "epochs": 1})
        return build_run(d)

    a, b = built(0), built(1)
    assert a.defenses[0].seed == 0 and b.defenses[0].seed == 1
    wa = next(iter(a.model.parameters())).detach()
    wb = next(iter(b.model.parameters())).detach()
    assert not wa.equal(wb)
    assert a.dataset.x_train.shape == b.dataset.x_train.shape and not a.dataset.ids_train.equal(b.dataset.ids_train)


def test_early_stopping_holds_out_training_samples_and_stops_on_a_plateau():
    d = RunDescription.from_dict({"data": "digits", "epochs": 40, "early_stopping": {"patience": 2},
                                  "optimizer": {"name": "sgd", "lr": 1e-6}})  # a model that cannot improve
    run = build_run(d)
    full = build_run(RunDescription.from_dict({"data": "digits"})).dataset
    assert len(run.dataset.x_train) == len(full.x_train) - round(0.1 * len(full.x_train))
    report = run.fit()
    assert report.summary["stopped"].startswith("early stopping")
    assert len(report.history) < 40 and "validation_accuracy" in report.history[0]


def test_an_audit_row_records_how_many_epochs_early_stopping_trained():
    from secsplit.evaluation.audit_config import RunSpec
    from secsplit.evaluation.runner import execute_run

    d = RunDescription.from_dict({"data": "digits", "epochs": 40, "early_stopping": {"patience": 2},
                                  "optimizer": {"name": "sgd", "lr": 1e-6}, "probe_samples": 16})
    (row,) = execute_run(RunSpec(d))
    assert row["status"] == "ok" and row["stopped"].startswith("early stopping") and 3 <= row["epochs_trained"] < 40
