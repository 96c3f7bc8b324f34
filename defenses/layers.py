"""What defenses that add trainable layers to a party's segment share (MID, ResSFL's bottleneck, CAE's decoder).

A layer such a defense adds becomes part of the segment that party owns: the party's own optimizer
trains it, checkpoints save it, and an attacker granted the client's weights (white-box inversion)
gets it too, so no defense looks stronger than it is merely because an attack was not told about it.
They need one chain of segments (vanilla, U-shape, multi-hop: :attr:`Topology.segments`).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from secsplit.errors import ConfigError


def chain_segments(topology, defense: str) -> tuple[list[nn.Module], list[str]]:
    """The chain's segments and their owners, or a ConfigError naming ``defense``."""
    if topology.segments is None or topology.owners is None:
        raise ConfigError(f"{defense} adds layers to a segment and needs one chain of segments "
                          f"(vanilla, U-shape, multi-hop); {topology.name} has none")
    return list(topology.segments), list(topology.owners)


def reinitialized(module: nn.Module, *, seed: int | None = None) -> nn.Module:
    """A trainable copy of ``module`` in training mode with fresh weights: drawn from ``seed`` without
    touching the global generator, or from the global generator (the caller seeds) when ``seed`` is None."""
    clone = copy.deepcopy(module)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for layer in clone.modules():
            if layer is not clone and hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    for p in clone.parameters():
        p.requires_grad_(True)
    return clone.train()


def segment_device(segment: nn.Module) -> torch.device:
    for p in segment.parameters():
        return p.device
    return torch.device("cpu")


def output_shape(segment: nn.Module, input_shape) -> tuple[int, ...]:
    """Per-sample shape of ``segment``'s output for inputs of ``input_shape`` (one dummy forward, no grad)."""
    was_training = segment.training
    segment.eval()
    try:
        with torch.no_grad():
            out = segment(torch.zeros(1, *input_shape, device=segment_device(segment)))
    finally:
        segment.train(was_training)
    return tuple(out.shape[1:])


def add_layer(topology, index: int, module: nn.Module, *, name: str, at: str = "end") -> nn.Module:
    """Put ``module`` at the end (or start) of segment ``index`` and let its owner's optimizer train it.

    Returns the module, moved to the segment's device.
    """
    segment = topology.segments[index]
    party = topology.parties[topology.owners[index]]
    module.to(segment_device(segment))
    key, n = name, 1
    while key in segment._modules:
        n += 1
        key = f"{name}{n}"
    if at == "end":
        segment.add_module(key, module)
    elif at == "start":
        segment._modules = OrderedDict([(key, module), *segment._modules.items()])
    else:
        raise ValueError(f"at must be 'start' or 'end', got {at!r}")
    trainable = [p for p in module.parameters() if p.requires_grad]
    if trainable:
        if party.optimizer is None:
            raise ConfigError(f"the {party.name} trains no weights, so it cannot train the layer {key!r}")
        party.optimizer.add_param_group({"params": trainable})
    return module


class AddLoss(torch.autograd.Function):
    """Identity on ``out``; in backward, ``loss`` gets gradient ``weight`` as if ``weight * loss`` were
    added to whatever loss ``out`` feeds. A layer inside a segment adds its own regularizer this way,
    in the same backward pass as the task loss, whichever party owns it."""

    @staticmethod
    def forward(ctx, out, loss, weight):
        ctx.weight = float(weight)
        ctx.meta = (loss.dtype, loss.device)
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        dtype, device = ctx.meta
        return grad, torch.full((), ctx.weight, dtype=dtype, device=device), None
