"""The in-process channel: delivery semantics, byte accounting, taps."""

import pytest
import torch

from secsplit.channel import EAVESDROPPER, Channel
from secsplit.errors import ChannelError


def test_send_detaches_from_sender_graph_and_keeps_values():
    channel = Channel()
    w = torch.ones(3, requires_grad=True)
    z = w * 2
    received = channel.send("client", "server", "activation", z, step=0)
    assert received.grad_fn is None and not received.requires_grad
    assert torch.equal(received, z.detach())


def test_bytes_counted_per_direction_kind_and_phase():
    channel = Channel()
    channel.send("client", "server", "activation", torch.zeros(4, 8), step=0)  # 128 bytes
    channel.send("client", "server", "labels", torch.zeros(4, dtype=torch.int64), step=0)  # 32 bytes
    channel.send("server", "client", "gradient", torch.zeros(4, 8, dtype=torch.float64), step=0)  # 256
    channel.phase = "eval"
    channel.send("client", "server", "activation", torch.zeros(2, 8), step=1)  # 64
    t = channel.traffic
    assert t.total(src="client", dst="server", phase="train") == 160
    assert t.total(src="client", kind="activation") == 192
    assert t.sent("server") == 256 and t.received("client") == 256
    assert t.total(what="messages") == 4
    summary = t.summary()
    assert summary["per_party"]["client"] == {
        "bytes_sent": 224, "bytes_received": 256, "messages_sent": 3, "messages_received": 1,
    }
    assert summary["per_direction"]["client->server"]["train/labels"] == 32
    assert summary["total_bytes"] == 480


def test_taps_see_exactly_their_party_messages():
    channel = Channel()
    seen = {"client": [], "server": [], "hop": [], EAVESDROPPER: []}
    for party, log in seen.items():
        channel.add_tap(party, lambda m, log=log: log.append((m.src, m.dst, m.kind)))
    channel.send("client", "hop", "activation", torch.zeros(1), step=0)
    channel.send("hop", "server", "activation", torch.zeros(1), step=0)
    assert seen["client"] == [("client", "hop", "activation")]
    assert seen["server"] == [("hop", "server", "activation")]
    assert len(seen["hop"]) == 2 and len(seen[EAVESDROPPER]) == 2


def test_tap_can_be_removed():
    channel = Channel()
    log = []
    remove = channel.add_tap("server", log.append)
    channel.send("client", "server", "activation", torch.zeros(1), step=0)
    remove()
    channel.send("client", "server", "activation", torch.zeros(1), step=1)
    assert len(log) == 1


def test_bad_messages_rejected_with_clear_errors():
    channel = Channel()
    with pytest.raises(ChannelError, match="unknown message kind 'secrets'"):
        channel.send("client", "server", "secrets", torch.zeros(1), step=0)
    with pytest.raises(ChannelError, match="must carry a tensor"):
        channel.send("client", "server", "activation", [1, 2], step=0)
