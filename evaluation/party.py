"""One party of a run across processes: build what it holds, agree with the others where to start, train.

Every party process builds the same topology from the same run file and seed and runs only its own
party's part of each step through a :class:`~secsplit.channel.network.NetworkChannel`. What a
process holds of the data is only what its party owns (:func:`held_data`).

Resume across processes. With ``checkpoint_dir`` a party saves its own state (its segments'
weights, its optimizer, the trainer's position, history and RNG) every ``checkpoint_every`` steps
and at epoch ends, in its own directory; the trainer state is kept per step beside the party's
files (the last two checkpoints). Every hello announces whether the party resumes and which
steps it holds; after the hellos each party computes the same start:

- nobody resumes: step 0;
- everybody resumes: the latest step every party holds (refused, naming each party's steps,
  when there is none);
- some resume and some do not: refused (restart every party with ``--resume``, or none).

A party that crashes is restarted alone with ``--resume``: its hello tells the others, which go
back to the same common checkpoint themselves (they must keep checkpoints too) and say hello
again, so the run goes on at once. Every party's weights and accuracy then equal those of the
uninterrupted run (same seed).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import replace

from secsplit.errors import ConfigError

PARTIES_KEY = "parties"
log = logging.getLogger("secsplit.party")


def run_digest(description, parties) -> str:
    """What every party's messages carry: the same run (description and party names), or a refusal."""
    from secsplit.description import stable_hash

    return "run-" + stable_hash({"run": description.to_dict(), "parties": sorted(parties)})


def weights_digest(party) -> str:
    """SHA-256 over a party's state (names, dtypes, shapes, bytes): equal digests, equal weights."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in party.segments.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.reshape(-1)
        digest.update((flat.to(torch.uint8) if flat.dtype == torch.bool else flat.view(torch.uint8)).numpy().tobytes())
    return digest.hexdigest()


# -- what a party holds --------------------------------------------------------------------------
def _zeros(t):
    import torch

    return torch.zeros((), dtype=t.dtype).expand(t.shape)  # no memory


def _only_view(x, view):
    """``x`` with everything outside ``view`` (a vertical client's columns or pixel box) zeroed."""
    import torch

    kept = torch.zeros_like(x)
    if view.columns is not None:
        columns = list(view.columns)
        kept[:, columns] = x[:, columns]
    else:
        r0, r1, c0, c1 = view.region
        kept[..., r0:r1, c0:c1] = x[..., r0:r1, c0:c1]
    return kept


def _only_rows(t, rows):
    """``t`` with every row but ``rows`` (a client's own samples) zeroed."""
    import torch

    kept = torch.zeros_like(t)
    kept[rows] = t[rows]
    return kept


def held_data(dataset, topology, role: str):
    """The data set as ``role`` holds it: inputs and labels it does not own are zeros.

    A data owner keeps its inputs: a vertical client only its own view's columns or pixels, a client
    of relay or SplitFed only its own shard of the training samples (the test set stays with the
    data owner that runs split inference). The labels stay where they are held: the label owner,
    or the data owners when they supply them (in vertical splits only client0, whose samples they
    label).
    """
    by_data_owner = topology.label_source == "data_owner"
    holds_labels = role in topology.data_owners if by_data_owner else role == topology.label_owner
    view = topology.feature_view(role)
    if view is not None and role != topology.data_owner:
        holds_labels = False  # the samples' labels come with the data owner (client0), not with every view
    changes = {}
    if role not in topology.data_owners:
        changes.update(x_train=_zeros(dataset.x_train), x_test=_zeros(dataset.x_test))
    else:
        if view is not None:  # a vertical client: the other clients' features are not its own
            changes.update(x_train=_only_view(dataset.x_train, view), x_test=_only_view(dataset.x_test, view))
        rows = topology.own_training_rows(role, len(dataset.y_train))
        if rows is not None:
            changes.update(x_train=_only_rows(dataset.x_train, rows))
            if holds_labels:
                changes.update(y_train=_only_rows(dataset.y_train, rows))
            if role != topology.data_owner:
                changes.update(x_test=_zeros(dataset.x_test), y_test=_zeros(dataset.y_test))
    if not holds_labels:
        changes.update(y_train=_zeros(dataset.y_train), y_test=_zeros(dataset.y_test))
    return replace(dataset, **changes) if changes else dataset


# -- building ------------------------------------------------------------------------------------
def build_party(description, parties: dict[str, str], role: str, *, certs=None, insecure: bool = False,
                listen: str | None = None, timeout_s: float = 60.0, max_message_bytes: int | None = None,
                progress: bool = False, checkpoint_dir=None, checkpoint_every: int = 50, resume: bool = False):
    """The run as ``role`` holds it: the whole topology over a NetworkChannel hosting ``role`` only.

    Returns the built run; its data set keeps only what ``role`` owns (:func:`held_data`), so
    nothing the party does not hold can shape its results. With ``checkpoint_dir`` the party
    checkpoints its own state there (and, with ``resume``, announces what it can resume from).
    """
    from secsplit.channel.network import NetworkChannel
    from secsplit.evaluation.build import build_run
    from secsplit.models import MODELS, create_model
    from secsplit.topologies import build_topology

    if role not in parties:
        raise ConfigError(f"--role {role!r} is not a party of the run; its parties: {', '.join(parties)}")
    attacks = [a for a in description.attacks if a != "none"]
    if attacks:
        raise ConfigError(f"{', '.join(attacks)}: {ATTACKS_IN_PROCESS}")
    checkpointing = _checkpointing(description, checkpoint_dir, checkpoint_every, resume)
    channel_options = {"max_message_bytes": max_message_bytes} if max_message_bytes else {}
    if checkpointing is not None:  # announced from the first hello the listener answers
        from secsplit.training import checkpointed_steps

        channel_options["checkpoints"] = {"resume": resume, "rejoins": True,
                                          "steps": checkpointed_steps(checkpoint_dir) if resume else []}
    holder = {}

    def remote(d, dataset, model_name, optimizer):
        options = dict(d.topology_options)
        if options.get("views") is not None:
            from secsplit.data import resolve_views

            options["views"] = resolve_views(dataset, options["views"])
        model_options = MODELS.check(model_name, d.model.options, partial=True)
        model = create_model(model_name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, seed=d.seed,
                             **model_options)
        channel = NetworkChannel(party=role, addresses=parties, run_id=run_digest(d, parties), certs=certs,
                                 insecure=insecure, listen=listen, timeout_s=timeout_s, **channel_options)
        holder["channel"] = channel
        try:
            topology = build_topology(d.topology.name, model, cuts=list(d.cuts) if d.cuts else None,
                                      optimizer=optimizer, label_source=d.label_source, seed=d.seed,
                                      model_name=model_name, model_options=model_options, channel=channel, **options)
            names = set(topology.party_names)
            if names != set(parties):
                missing, extra = sorted(names - set(parties)), sorted(set(parties) - names)
                raise ConfigError(f"[{PARTIES_KEY}] must name exactly the parties of {d.topology.name}: "
                                  f"{', '.join(topology.party_names)}"
                                  + (f"; missing {', '.join(missing)}" if missing else "")
                                  + (f"; not a party: {', '.join(extra)}" if extra else ""))
        except BaseException:
            holder.pop("channel").close(error="its run file did not build")
            raise
        return topology

    try:
        built = build_run(description, progress=progress, remote=remote, attach_attacks=False,
                          checkpointing=checkpointing)
    except BaseException:
        if "channel" in holder:  # built, then something after it failed (a defense's setup, the run record)
            holder["channel"].close(error="its run file did not build")
        raise
    topology = built.topology
    if topology.channel is not holder["channel"]:  # a defense that stands for a configuration rebuilt it
        holder["channel"].close(error="its run file did not build")
        raise ConfigError("a run across processes takes its topology from the run file, not from a defense")
    # the outcome (test accuracy) is known where the labels meet the logits: the data owner that runs
    # split inference, or the label owner that computes them when it holds the labels
    by_data_owner = topology.label_source == "data_owner"
    topology.holds_labels = role == (topology.data_owner if by_data_owner else topology.label_owner)
    built.dataset = held_data(built.dataset, topology, role)
    return built


ATTACKS_IN_PROCESS = (
    "an attack is scored against ground truth its seat's party does not hold across processes (a label attack "
    "against the label owner's labels, an input reconstruction against the data owner's inputs): run attacks in "
    "process, where the simulation holds every party's data (`secsplit audit --config` on this run file audits "
    "it with every attack, its [parties] set aside); a run across processes trains only")

def _checkpointing(description, directory, every: int, resume: bool):
    """The party's :class:`~secsplit.training.Checkpointing`, after checking the run it resumes is this one."""
    from secsplit.evaluation.commands.train import _check_or_record_run
    from secsplit.training import Checkpointing

    if directory is None:
        if resume:
            raise ConfigError("--resume needs --checkpoint-dir DIR (where this party saved its state)")
        return None
    checkpointing = Checkpointing(str(directory), every=every, resume=resume)
    _check_or_record_run(checkpointing, description)
    return checkpointing


# -- agreeing where to start ---------------------------------------------------------------------
def agree_on_step(role: str, own: dict, peers: dict[str, dict]) -> int | None:
    """The step every party resumes from (None: from the start), the same in every party's process.

    ``own`` and each of ``peers`` are what a hello announces: ``{"resume": bool, "steps": [...]}``.
    """
    everyone = {role: own, **peers}
    resuming = sorted(p for p, info in everyone.items() if info["resume"])
    if not resuming:
        return None
    fresh = sorted(set(everyone) - set(resuming))
    if fresh:
        raise ConfigError(f"{', '.join(resuming)} resume{'s' if len(resuming) == 1 else ''} from checkpoints but "
                          f"{', '.join(fresh)} start{'s' if len(fresh) == 1 else ''} afresh: restart every party "
                          f"with --resume (or every party without it to start over)")
    common = set.intersection(*(set(info["steps"]) for info in everyone.values()))
    if not common:
        held = "; ".join(f"{p}: {', '.join(map(str, everyone[p]['steps'])) or 'none'}" for p in sorted(everyone))
        raise ConfigError(f"the parties hold no checkpoint of the same step ({held}): restart every party without "
                          f"--resume to start over")
    return max(common)


# -- running -------------------------------------------------------------------------------------
def run_party(description, parties, role: str, **options) -> dict:
    """Train as ``role`` (see :func:`build_party`); returns the party's JSON-ready summary.

    Says hello to every other party first (same run, or refused), and goodbye at the end, with the
    reason when this party fails, so the others stop at once rather than time out. When a peer
    restarts with ``--resume`` mid-run, this party goes back to the common checkpoint and goes on.
    """
    rejoined = 0
    while True:
        built = build_party(description, parties, role, **options)
        channel = built.topology.channel
        try:
            channel.open()
            step = agree_on_step(role, channel.checkpoints, channel.peer_checkpoints)
            if built.trainer.checkpointing is not None:
                built.trainer.resume_from(step)
            report = built.fit()
            channel.flush()
        except BaseException as error:
            if channel.restarted and channel.checkpoints.get("rejoins") and not isinstance(error, KeyboardInterrupt):
                log.warning("%s: %s; going back to the parties' last common checkpoint", role, channel.restarted)
                channel.close(rejoin=True)
                options["resume"], rejoined = True, rejoined + 1
                continue
            channel.close(error=f"{type(error).__name__}: {error}" if not str(error) else str(error))
            if channel.restarted and not isinstance(error, ConfigError):
                raise ConfigError(channel.restarted) from None  # the real cause, not the broken step it left
            raise
        channel.close()
        summary = party_summary(built, role, report)
        summary.update(resumed_from_step=step, rejoined=rejoined)
        return summary


def party_summary(built, role: str, report) -> dict:
    """What one party knows of the run: its results, traffic (payload and framing), weights digest."""
    from secsplit.evaluation.runner import _combined

    topology = built.topology
    history = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
               for row in report.history]
    for row in history:
        if row.get("train_loss") is None:
            row["train_accuracy"] = None
    traffic = topology.channel.traffic
    return {
        "party": role,
        "topology": topology.name,
        "test_accuracy": report.summary["test_accuracy"],
        "history": history,
        "bytes_sent": traffic.sent(role),
        "bytes_received": traffic.received(role),
        "traffic": traffic.summary(),
        "transport": topology.channel.transport(),
        "weights_sha256": weights_digest(topology.parties[role]) if role in topology.parties else None,
        "wall_time_s": report.summary["wall_time_s"],
        "defenses": [d.report() for d in built.defenses],
        "epsilon": _combined(d.epsilon() for d in built.defenses),
        "run_key": built.description.key(),
    }


def print_party_summary(summary: dict) -> None:
    accuracy = summary["test_accuracy"]
    last = summary["history"][-1] if summary["history"] else {}
    loss = last.get("train_loss")
    transport = summary["transport"]
    epsilon = summary.get("epsilon")
    print(f"{summary['party']:<10} {summary['topology']}: test accuracy "
          f"{'n/a' if accuracy is None else f'{accuracy:.4f}'}, train loss {'n/a' if loss is None else f'{loss:.4f}'}, "
          f"payload {summary['bytes_sent']:,} B sent / {summary['bytes_received']:,} B received, "
          f"framing {transport['framing_sent']:,} B, {summary['wall_time_s']:.1f} s"
          + (f", epsilon {epsilon['prv']:.3g} (delta {epsilon['delta']:g})"
             if isinstance(epsilon, dict) and "prv" in epsilon else "")
          + (f", resumed from step {summary['resumed_from_step']}" if summary.get("resumed_from_step") else ""))
