"""Audits end to end: grid -> JSONL rows -> tables, plots, HTML; resumable; bad configs fail early."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from secsplit.errors import ConfigError
from secsplit.evaluation.audit_config import build_audit_config, load_audit_config
from secsplit.evaluation.cli import main
from secsplit.evaluation.results import append_row, load_rows
from secsplit.evaluation.runner import run_audit

TINY = """
[audit]
name = "tiny"
seeds = [0]
epochs = 1
batch_size = 64
probe_samples = 64

[[experiment]]
dataset = "breast-cancer-imbalanced"
model = "mlp"
topologies = ["vanilla", "ushape"]
label_source = "label_owner"
batch_size = 32
defenses = ["none", "nopeek:alpha=1"]
attacks = ["norm-attack", "cosine-attack"]
"""


def _comparable(rows):
    """Rows without timings, which differ between runs."""
    drop = {"wall_time_s", "train_wall_time_s", "attack_wall_time_s", "flops", "versions", "trained"}
    return sorted((json.dumps({k: v for k, v in r.items() if k not in drop}, sort_keys=True) for r in rows))


@pytest.fixture()
def tiny_config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_audit_writes_rows_tables_plots_and_html_and_a_rerun_adds_nothing(tmp_path, tiny_config, capsys):
    out = tmp_path / "out"
    assert main(["audit", "--config", str(tiny_config), "--out", str(out), "--quiet"]) == 0
    rows = load_rows(out / "results.jsonl")
    assert len(rows) == 8  # 2 topologies x 2 defenses x 2 attacks
    assert {r["training"]["defense"] for r in rows} == {"none", "nopeek:alpha=1"}
    for row in rows:
        assert 0 <= row["utility"] <= 1 and 0 < row["dcor"] <= 1 and row["bytes"]["client"]["bytes_sent"] > 0
        # every seat: in U-shape the client holds the labels, so the attack runs from the server's seat,
        # which receives the tail's gradient; in vanilla from the client's
        assert row["seat"] == ("server" if row["topology"] == "ushape" else "client")
        assert row["status"] == "ok" and 0.5 <= row["leakage"]["leak_auc"] <= 1
    for name in ("results.md", "results.csv", "results.tex", "report.html", "privacy_utility.png"):
        assert (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "nopeek:alpha=1" in html
    assert main(["audit", "--config", str(tiny_config), "--out", str(out), "--quiet"]) == 0
    assert len(load_rows(out / "results.jsonl")) == 8
    assert "4 training runs (4 already done), 0 new rows" in capsys.readouterr().out


def test_report_regenerates_from_results(tmp_path, tiny_config):
    out = tmp_path / "out"
    run_audit(load_audit_config(tiny_config), out / "results.jsonl", quiet=True)
    assert main(["report", str(out / "results.jsonl")]) == 0
    text = (out / "results.md").read_text()
    assert "nopeek:alpha=1" in text and "### norm-attack from the client seat" in text and "ushape" in text


def test_interrupted_append_leaves_no_half_row_and_resume_completes(tmp_path, tiny_config):
    config = load_audit_config(tiny_config)
    reference = tmp_path / "reference.jsonl"
    run_audit(config, reference, quiet=True)
    resumed = tmp_path / "resumed.jsonl"
    first = load_rows(reference)[0]
    append_row(resumed, first)
    with open(resumed, "ab") as handle:  # a write cut off mid-row
        handle.write(b'{"config_hash": "abc", "status": "o')
    assert len(load_rows(resumed)) == 1
    counts = run_audit(config, resumed, quiet=True)
    assert counts["skipped"] == 0 and counts["rows"] == 7  # the first run's second row was never written
    assert _comparable(load_rows(resumed)) == _comparable(load_rows(reference))


@pytest.mark.slow
def test_audit_killed_mid_way_then_resumed_gives_the_same_rows(tmp_path, tiny_config):
    reference = tmp_path / "reference"
    run_audit(load_audit_config(tiny_config), reference / "results.jsonl", quiet=True)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "secsplit.evaluation", "audit", "--config", str(tiny_config), "--out", str(out), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (results.exists() and results.read_bytes().count(b"\n") >= 1):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = len(load_rows(results))
    assert 1 <= finished_before <= 8
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _comparable(load_rows(results)) == _comparable(load_rows(reference / "results.jsonl"))


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"experiment": [{"dataset": "imagenet"}]}, "experiment 1.data: unknown data set 'imagenet'"),
        ({"experiment": [{"dataset": "digits", "topologies": ["ring"]}]}, "experiment 1.topology: unknown topology 'ring'"),
        ({"experiment": [{"dataset": "digits", "defenses": ["magic"]}]}, "experiment 1.defenses: unknown defense 'magic'"),
        ({"experiment": [{"dataset": "digits", "attacks": ["mind-reading"]}]}, "experiment 1.attacks: unknown attack 'mind-reading'"),
        ({"experiment": [{"dataset": "digits", "epochs": -1}]}, "epochs must be a non-negative integer"),
        ({"audit": {"colour": 1}, "experiment": [{"dataset": "digits"}]}, r"\[audit\]: unknown key\(s\) colour"),
        ({"audit": {}}, "needs at least one \\[\\[experiment\\]\\]"),
    ],
)
def test_bad_audit_configs_fail_before_training_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        build_audit_config(raw)


def test_bad_toml_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[experiment\n")
    assert main(["audit", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad TOML" in err[0]
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_failed_run_is_recorded_and_does_not_stop_the_audit(tmp_path, monkeypatch):
    config = build_audit_config({"audit": {"epochs": 1, "probe_samples": 64},
                                 "experiment": [{"dataset": "digits", "defenses": ["none", "nopeek:alpha=1"]}]})
    import secsplit.defenses.nopeek as nopeek

    def broken(self, x, z, *, party, step):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(nopeek.NoPeek, "extra_loss", broken)
    counts = run_audit(config, tmp_path / "r.jsonl", quiet=True)
    rows = load_rows(tmp_path / "r.jsonl")
    assert counts["failed"] == 1 and {r["status"] for r in rows} == {"ok", "failed"}
    failed = next(r for r in rows if r["status"] == "failed")
    assert "simulated failure" in failed["error"]


@pytest.mark.slow
def test_ray_executor_gives_the_same_rows_as_the_process_pool(tmp_path, tiny_config):
    pytest.importorskip("ray", reason="optional extra secsplit[ray] not installed")
    config = load_audit_config(tiny_config)
    run_audit(config, tmp_path / "pool.jsonl", jobs=2, quiet=True)
    run_audit(config, tmp_path / "ray.jsonl", jobs=2, executor="ray", quiet=True)
    assert _comparable(load_rows(tmp_path / "ray.jsonl")) == _comparable(load_rows(tmp_path / "pool.jsonl"))


def test_an_audit_joins_a_running_two_node_ray_cluster(tmp_path):
    """`--ray-address`: the runs spread over a cluster's nodes (two simulated on this machine) and give the pool's rows."""
    pytest.importorskip("ray", reason="optional extra secsplit[ray] not installed")
    from ray.cluster_utils import Cluster

    config = build_audit_config({"audit": {"epochs": 1, "probe_samples": 64}, "experiment": [
        {"data": "breast-cancer-imbalanced", "topology": [{"name": "vanilla", "label_source": "label_owner"}, "ushape"],
         "batch_size": 32, "attacks": ["norm-attack"]}]})
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        assert len(cluster.list_all_nodes()) == 2
        run_audit(config, tmp_path / "ray.jsonl", executor="ray", ray_address=cluster.address, quiet=True)
    finally:
        cluster.shutdown()
    run_audit(config, tmp_path / "pool.jsonl", jobs=1, quiet=True)
    assert _comparable(load_rows(tmp_path / "ray.jsonl")) == _comparable(load_rows(tmp_path / "pool.jsonl"))


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(tmp_path, tiny_config):
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (.ci/run installs it from Debian's packages)")
    out = tmp_path / "out"
    assert main(["audit", "--config", str(tiny_config), "--out", str(out), "--quiet"]) == 0
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600", f"--screenshot={shot}",
                    (out / "report.html").as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1200, 1600)
    histogram = image.histogram()
    assert sum(histogram[:128]) > 0.01 * sum(histogram)  # text, tables and plots drew dark pixels on the page


def test_runs_without_training_observers_reuse_the_cached_model(tmp_path):
    config = build_audit_config({"audit": {"epochs": 1, "probe_samples": 64}, "experiment": [
        {"data": "breast-cancer-imbalanced", "topology": {"name": "vanilla", "label_source": "label_owner"},
         "batch_size": 32, "attacks": ["norm-attack"]},
        {"data": "breast-cancer-imbalanced", "topology": "ushape", "batch_size": 32}]})
    run_audit(config, tmp_path / "a" / "results.jsonl", quiet=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cache").symlink_to(tmp_path / "a" / "cache")
    run_audit(config, tmp_path / "b" / "results.jsonl", quiet=True)
    fresh, second = load_rows(tmp_path / "a" / "results.jsonl"), load_rows(tmp_path / "b" / "results.jsonl")
    assert {r["trained"] for r in fresh} == {"fresh"}
    # the label attack watches training, so the vanilla run trains again; nothing watches the U-shape
    # run, so its cached weights are loaded instead
    assert {(r["topology"], r["trained"]) for r in second} == {("vanilla", "fresh"), ("ushape", "cache")}
    assert _comparable(fresh) == _comparable(second)  # same weights -> same utility, dCor, bytes

def test_worker_seconds_count_a_training_once_and_never_a_cached_one():
    from secsplit.evaluation.runner import add_worker_seconds

    phases = {"training": 0.0, "attacks": 0.0, "tuning": 0.0, "total": 0.0}
    fresh = [{"trained": "fresh", "train_wall_time_s": 10.0, "attack_wall_time_s": 2.0, "wall_time_s": 20.0,
              "tuning": {"seconds": 5.0}},
             {"trained": "fresh", "train_wall_time_s": 10.0, "attack_wall_time_s": 1.5, "wall_time_s": 20.0}]
    cached = [{"trained": "cache", "train_wall_time_s": 10.0, "attack_wall_time_s": 3.0, "wall_time_s": 4.0,
               "tuning": {"skipped": "no search space"}}]
    add_worker_seconds(phases, fresh)
    add_worker_seconds(phases, cached)
    add_worker_seconds(phases, [])
    assert phases == {"training": 10.0, "attacks": 6.5, "tuning": 5.0, "total": 24.0}


def test_an_experiment_without_epochs_trains_to_convergence_and_explicit_epochs_are_kept():
    from secsplit.evaluation.audit_config import build_audit_config

    def first_run(audit: dict, experiment: dict):
        raw = {"audit": audit, "experiment": [{"data": "digits", "model": "mlp", **experiment}]}
        return build_audit_config(raw).runs[0].description

    converge = first_run({}, {})
    assert converge.epochs == 40 and converge.early_stopping.patience == 5
    fixed = first_run({"epochs": 3}, {})
    assert fixed.epochs == 3 and fixed.early_stopping is None  # a number of epochs asked for is trained as asked
    assert first_run({}, {"epochs": 2}).early_stopping is None
    own = first_run({}, {"early_stopping": {"patience": 2}})
    assert own.early_stopping.patience == 2 and own.epochs == 5  # the user's stopping rule, the usual cap


@pytest.mark.parametrize("pool", ["runner", "frontier"])
def test_pool_workers_end_when_the_audit_is_killed(tmp_path, pool):
    """A worker of the audit's or the frontier's pool does not train on for nobody after its parent dies
    (killed, or stopped by `timeout`), writing into the next run's model cache."""
    script = tmp_path / "parent.py"
    script.write_text(f'''
import multiprocessing, os, time
from concurrent.futures import ProcessPoolExecutor
from secsplit.evaluation import frontier, runner
if __name__ == "__main__":  # forkserver workers import this file again
    if "{pool}" == "runner":
        pool = ProcessPoolExecutor(max_workers=1, initializer=runner._worker_init)
    else:
        context = multiprocessing.get_context("forkserver")
        pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=frontier._set_threads,
                                   initargs=(1, os.getpid()))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)
    time.sleep(120)
''')
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for its (new) parent to reap it has ended
        return stat.read().split(")")[-1].split()[0] != "Z"
