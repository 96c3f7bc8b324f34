"""Callbacks' own state in training checkpoints: a run crashed mid-epoch and resumed ends exactly as the
uninterrupted run (weights, epsilon, detector state), for every defense that keeps state of its own."""

from __future__ import annotations

import pytest
import torch

from secsplit.callback_state import callbacks_state_name, join_state, split_state
from secsplit.callbacks import Callback, SeededGenerator
from secsplit.data import load_dataset
from secsplit.defenses import create_defense
from secsplit.errors import ConfigError
from secsplit.models import create_model
from secsplit.topologies import build_topology
from secsplit.training import Checkpointing, Trainer

pytestmark = pytest.mark.filterwarnings("ignore:.*(Secure RNG|Optimal order|secure_mode|Full backward hook).*")

EPOCHS, EVERY, CRASH_AT = 2, 3, 11  # checkpoints at steps 3, 6, 9 and each epoch end; the crash in epoch 2


class _Crash(Exception):
    pass


class _CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, *, step, loss):
        if step == self.step:
            raise _Crash(step)


# case -> (defense, options, classes, topology, data): each defense where it applies; "digits" trains LeNet on digits
DEFENSES = {
    "noise": ("noise", {"scale": 0.5}, 3, "vanilla", "synthetic"),
    "label-dp": ("label-dp", {"epsilon": 1.0}, 3, "vanilla", "synthetic"),
    "gradient-noise": ("gradient-noise", {"scale": 1.0}, 3, "vanilla", "synthetic"),
    "marvell": ("marvell", {}, 2, "vanilla", "synthetic"),
    "mid": ("mid", {"bottleneck": 4, "hidden": 16}, 3, "vanilla", "synthetic"),
    "attacker-aware": ("attacker-aware", {"lam": 0.5}, 3, "vanilla", "synthetic"),
    "attacker-aware-pretrained": ("attacker-aware", {"lam": 0.5, "pretrain_epochs": 1, "pretrain_data": "digits"}, 10,
                                  "vanilla", "digits"),
    "dpsgd": ("dpsgd", {"noise_multiplier": 1.0}, 3, "vanilla", "synthetic"),
    "dpsgd-target": ("dpsgd", {"target_epsilon": 4.0}, 3, "vanilla", "synthetic"),
    "hijack-detection": ("hijack-detection", {"warmup": 2, "window": 2}, 3, "ushape", "synthetic"),
    # on the small synthetic MLP splitout flags honest training at once; on digits (its own tests' setup) it does not
    "splitout": ("splitout", {"sim_epochs": 10}, 10, "vanilla", "digits"),
}


def _run(case, directory, *, crash_at=None, resume=False, epochs=EPOCHS):
    name, options, classes, topology, source = DEFENSES[case]
    if source == "digits":
        data = load_dataset("digits", seed=0)
        model = create_model("lenet", input_shape=data.input_shape, num_classes=classes, seed=0)
    else:
        data = load_dataset("synthetic", seed=0, n_samples=256, num_classes=classes, n_features=10)
        model = create_model("mlp", input_shape=data.input_shape, num_classes=classes, seed=0, hidden=(16, 8))
    cuts = ["relu1", "relu2"] if topology == "ushape" else None
    topo = build_topology(topology, model, cuts=cuts)
    defense = create_defense(name, **options)
    callbacks = [defense] + ([_CrashAt(crash_at)] if crash_at is not None else [])
    checkpointing = None if directory is None else Checkpointing(str(directory), every=EVERY, resume=resume)
    trainer = Trainer(topo, batch_size=32, epochs=epochs, seed=0, callbacks=callbacks, checkpointing=checkpointing)
    report = trainer.fit(data)
    return model, defense, report


def _crash_then_resume(case, directory):
    with pytest.raises(_Crash):
        _run(case, directory, crash_at=CRASH_AT)
    return _run(case, directory, resume=True)


def _same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def _comparable(defense) -> dict:
    report = defense.report()
    report.pop("seconds", None)
    epsilon = getattr(defense, "epsilon", None)
    return {"report": report, "epsilon": epsilon() if callable(epsilon) else None}


@pytest.mark.parametrize("case", sorted(DEFENSES))
def test_a_crashed_run_resumed_ends_as_the_uninterrupted_run(case, tmp_path):
    whole_model, whole_defense, whole = _run(case, None)
    model, defense, resumed = _crash_then_resume(case, tmp_path)
    assert _same_weights(model, whole_model)
    assert [r["test_accuracy"] for r in resumed.history] == [r["test_accuracy"] for r in whole.history]
    assert _comparable(defense) == _comparable(whole_defense)


def test_without_its_state_a_resumed_noise_defense_replays_noise_and_the_run_differs(tmp_path, monkeypatch):
    """The control: the comparison above fails when the generator restarts on resume."""
    from secsplit.defenses.noise import ActivationNoise

    whole_model, _, _ = _run("noise", None)
    monkeypatch.setattr(ActivationNoise, "load_state_dict", lambda self, state: None)
    model, _, _ = _crash_then_resume("noise", tmp_path)
    assert not _same_weights(model, whole_model)


def test_a_resumed_attacker_aware_run_does_not_pretrain_again(tmp_path, monkeypatch):
    from secsplit.defenses.attacker_aware import AttackerAwareTraining

    calls = []
    pretrain = AttackerAwareTraining.pretrain
    monkeypatch.setattr(AttackerAwareTraining, "pretrain", lambda self: calls.append(1) or pretrain(self))
    with pytest.raises(_Crash):
        _run("attacker-aware-pretrained", tmp_path, crash_at=CRASH_AT)
    assert len(calls) == 1
    _, defense, _ = _run("attacker-aware-pretrained", tmp_path, resume=True)
    assert len(calls) == 1 and defense.pretrain_summary["epochs"] == 1  # restored, not redone


def test_dpsgd_accounting_counts_the_steps_before_the_crash(tmp_path):
    _, whole, _ = _run("dpsgd", None)
    _, resumed, _ = _crash_then_resume("dpsgd", tmp_path)
    assert resumed.steps == whole.steps > CRASH_AT
    assert resumed.epsilon()["prv"] == whole.epsilon()["prv"]


def test_dpsgd_resumed_with_other_epochs_under_a_target_epsilon_is_refused(tmp_path):
    """target_epsilon spreads the budget over the run's epochs: more epochs on resume would change the noise
    multiplier mid-run, and one accounting would no longer cover every step."""
    with pytest.raises(_Crash):
        _run("dpsgd-target", tmp_path, crash_at=CRASH_AT)
    with pytest.raises(ConfigError, match="dpsgd: the checkpoint was trained with noise multiplier .* resume with "
                                          "the same epochs"):
        _run("dpsgd-target", tmp_path, resume=True, epochs=EPOCHS + 1)
    model, defense, _ = _run("dpsgd-target", tmp_path, resume=True)  # the same epochs: it resumes
    whole_model, whole, _ = _run("dpsgd-target", None)
    assert _same_weights(model, whole_model) and defense.epsilon() == whole.epsilon()


def test_a_missing_or_altered_callbacks_state_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(_Crash):
        _run("noise", tmp_path, crash_at=CRASH_AT)
    blob = tmp_path / f"{callbacks_state_name(9)}.safetensors"
    blob.write_bytes(blob.read_bytes()[:-3] + b"xyz")
    with pytest.raises(ConfigError, match=r"callbacks-step000000009\.safetensors does not match its checksum"):
        _run("noise", tmp_path, resume=True)
    blob.unlink()
    (tmp_path / f"{callbacks_state_name(9)}.json").unlink()
    with pytest.raises(ConfigError, match=r"callbacks-step000000009\.json is missing, and ActivationNoise need"):
        _run("noise", tmp_path, resume=True)


def test_a_state_saved_by_other_defenses_is_refused(tmp_path):
    with pytest.raises(_Crash):
        _run("noise", tmp_path, crash_at=CRASH_AT)
    with pytest.raises(ConfigError, match=r"field callbacks holds \['ActivationNoise'\], this run has \['LabelDP'\]"):
        _run("label-dp", tmp_path, resume=True)


def test_states_split_into_tensors_and_json_and_join_back():
    state = {"generator": torch.arange(5, dtype=torch.uint8), "n": 3, "nested": [{"t": torch.ones(2)}, None, "s"]}
    plain, tensors = split_state(state)
    assert set(tensors) == {"generator", "nested.0.t"} and plain["n"] == 3
    back = join_state(plain, tensors, where="here")
    assert torch.equal(back["generator"], state["generator"]) and torch.equal(back["nested"][0]["t"], torch.ones(2))
    assert back["nested"][1:] == [None, "s"]
    with pytest.raises(ConfigError, match="here: tensor 'gone' is missing"):
        join_state({"x": {"tensor": "gone"}}, {}, where="here")
    with pytest.raises(TypeError, match="holds a set"):
        split_state({"bad": {1, 2}})


def test_a_seeded_generator_draws_on_after_restore_and_keeps_its_state_until_the_first_draw():
    source = SeededGenerator(7)
    first = torch.rand(3, generator=source.on("cpu"))
    saved = source.state()
    expected = torch.rand(3, generator=source.on("cpu"))
    again = SeededGenerator(7)
    assert again.state() is None  # nothing drawn, nothing to save
    again.restore(saved)
    assert torch.equal(again.state(), saved)  # a checkpoint before the first draw after a resume keeps it
    drawn = torch.rand(3, generator=again.on("cpu"))
    assert torch.equal(drawn, expected) and not torch.equal(drawn, first)
