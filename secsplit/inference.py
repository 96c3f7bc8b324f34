"""Split inference: the data owner gets predictions while each party runs only its own segments.

:class:`SplitInference` drives a topology's ``predict`` (every cut crossing goes through the
topology's channel, phase "eval") in batches and reports what each request cost on the wire.

What each party sees during inference:

- vanilla (client -> server): the server receives the client's cut activation, computes the
  logits and sends them back ("logits" message): the server sees the logits, hence the prediction.
- U-shape (client -> server -> client): the server receives an activation and sends an activation
  back; the client computes the logits itself. The server never sees logits, predictions or
  labels (tests check this with a tap on the server).
- multi-hop: like vanilla (or U-shape for multihop-ushape), with every hop seeing only its
  neighbours' activations.

No labels are sent during inference in any topology.

Example::

    from secsplit.checkpoint import load_split_model
    from secsplit.inference import SplitInference

    infer = SplitInference(load_split_model("ckpt/"))
    classes = infer.predict_classes(x)          # x: (N, *input_shape)
    infer.last_request.bytes_sent               # client -> others, this request
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from secsplit.checkpoint import CheckpointError
from secsplit.errors import ConfigError


@dataclass
class RequestTraffic:
    """What one :meth:`SplitInference.predict` call (or all of them, for ``total``) sent.

    Attributes:
        samples: inputs predicted.
        batches: topology.predict calls (one step id each on the channel).
        bytes_sent: bytes the data owner sent (client -> server, or to the first hop).
        bytes_received: bytes the data owner received back.
        messages_sent, messages_received: message counts, same directions.
        by_direction: "src->dst" -> {kind: bytes} for every eval message of the request.
    """

    samples: int = 0
    batches: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    by_direction: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, other: RequestTraffic) -> None:
        self.samples += other.samples
        self.batches += other.batches
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received
        self.messages_sent += other.messages_sent
        self.messages_received += other.messages_received
        for direction, kinds in other.by_direction.items():
            mine = self.by_direction.setdefault(direction, {})
            for kind, n in kinds.items():
                mine[kind] = mine.get(kind, 0) + n

    def as_dict(self) -> dict:
        return {"samples": self.samples, "batches": self.batches, "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received, "messages_sent": self.messages_sent,
                "messages_received": self.messages_received,
                "by_direction": {d: dict(k) for d, k in self.by_direction.items()}}


class SplitInference:
    """Batched split inference over a (trained or loaded) topology, with per-request traffic.

    Args:
        topology: a Topology (e.g. from :func:`secsplit.checkpoint.load_split_model`).
        batch_size: the largest batch sent through the chain at once; larger inputs are split.
        allow_unloaded: run even when some party's weights were not loaded from the checkpoint
            (they hold untrained initial weights, so results are meaningless). Default: refuse.

    Attributes:
        last_request: :class:`RequestTraffic` of the latest :meth:`predict` call.
        total: :class:`RequestTraffic` summed over every call.
        requests: number of calls so far; each batch's channel messages carry a fresh step id.
    """

    def __init__(self, topology, *, batch_size: int = 1024, allow_unloaded: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        unloaded = [n for n, p in topology.parties.items() if not p.loaded]
        if unloaded and not allow_unloaded:
            raise CheckpointError(f"parties {', '.join(unloaded)} have no trained weights (not loaded from the checkpoint); "
                                "load every party, or pass allow_unloaded=True to run anyway")
        self.topology = topology
        self.batch_size = batch_size
        self.last_request = RequestTraffic()
        self.total = RequestTraffic()
        self.requests = 0
        self._next_step = 0

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-sample input shape the topology declares (None: unknown, inputs are not checked)."""
        return self.topology.input_shape

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        for party in self.topology.parties.values():
            for param in party.segments.parameters():
                return param.device, param.dtype
        return torch.device("cpu"), torch.float32

    def _check_input(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            try:
                x = torch.as_tensor(x)
            except (TypeError, ValueError, RuntimeError):
                raise ConfigError(f"inputs must be a tensor or array, got {type(x).__name__}") from None
        shape = self.input_shape
        if shape is not None and tuple(x.shape[1:]) != shape:
            hint = "; add a batch dimension (x.unsqueeze(0)) for one sample" if tuple(x.shape) == shape else ""
            raise ConfigError(f"inputs must have shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}{hint}")
        device, dtype = self._device_dtype()
        if x.is_complex():
            raise ConfigError(f"inputs must be real numbers, got dtype {x.dtype}")
        if x.dtype != dtype:
            x = x.to(dtype)
        return x.to(device)

    @torch.no_grad()
    def predict(self, x) -> torch.Tensor:
        """Logits (N, num_classes) as the data owner finally holds them; batches of ``batch_size``.

        Every batch crosses the topology's channel in phase "eval"; :attr:`last_request` says what
        this call sent and received.
        """
        x = self._check_input(x)
        topology = self.topology
        traffic = topology.channel.traffic
        before_bytes, before_msgs = Counter(traffic.bytes), Counter(traffic.messages)
        modes = {name: party.segments.training for name, party in topology.parties.items()}
        topology.eval()
        outputs, batches = [], 0
        try:
            for start in range(0, len(x), self.batch_size):
                outputs.append(topology.predict(x[start:start + self.batch_size], step=self._next_step))
                self._next_step += 1
                batches += 1
        finally:
            for name, party in topology.parties.items():
                party.train(modes[name])
        if outputs:
            logits = torch.cat(outputs)
        else:  # nothing to predict: nothing is sent
            num_classes = topology.num_classes or 0
            logits = torch.empty((0, num_classes), device=x.device)
        request = self._delta(before_bytes, before_msgs, samples=len(x), batches=batches)
        self.requests += 1
        self.last_request = request
        self.total.add(request)
        return logits

    def predict_classes(self, x) -> torch.Tensor:
        """Predicted class per input (N,), int64, computed by the data owner from its logits."""
        return self.predict(x).argmax(dim=1)

    def _delta(self, before_bytes: Counter, before_msgs: Counter, *, samples: int, batches: int) -> RequestTraffic:
        traffic = self.topology.channel.traffic
        owner = self.topology.data_owner
        request = RequestTraffic(samples=samples, batches=batches)
        for key, value in traffic.bytes.items():
            src, dst, kind, phase = key
            n = value - before_bytes.get(key, 0)
            messages = traffic.messages[key] - before_msgs.get(key, 0)
            if phase != "eval" or (n == 0 and messages == 0):
                continue
            request.by_direction.setdefault(f"{src}->{dst}", {}).setdefault(kind, 0)
            request.by_direction[f"{src}->{dst}"][kind] += n
            if src == owner:
                request.bytes_sent += n
                request.messages_sent += messages
            if dst == owner:
                request.bytes_received += n
                request.messages_received += messages
        return request


__all__ = ["RequestTraffic", "SplitInference"]
