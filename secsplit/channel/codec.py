"""The wire format: a small protobuf envelope around raw tensor bytes. Nothing is ever unpickled.

The envelope, as a ``.proto`` file would declare it (built at import time from a descriptor, so
no generated code has to match the installed protobuf runtime)::

    message Envelope {
      string run_id = 1;   // which training run / session the message belongs to
      int64  step   = 2;   // training step or inference request number
      string kind   = 3;   // activation, gradient, labels, logits, weights, ids, or control
      string src    = 4;   // sending party
      string dst    = 5;   // receiving party
      string phase  = 6;   // train or eval
      string tag    = 7;   // optional sub-name (a parameter name, a control verb)
      string dtype  = 8;   // tensor dtype name, from a fixed allow-list
      repeated int64 shape = 9;
      bytes  data   = 10;  // the tensor's bytes, little-endian, C order
      string meta   = 11;  // control messages only: a JSON object (parsed, never evaluated)
      string error  = 12;  // a refusal: why the receiver rejected the request
      int64  seq    = 13;  // position in the sender's stream to this receiver (party-to-party messages)
    }

Decoding checks everything before touching the bytes: total size against the limit, known kind
and phase, dtype on the allow-list, shape rank and non-negative dims, and that ``data`` holds
exactly ``prod(shape) * itemsize`` bytes. Any failure is a :class:`CodecError` naming the problem.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field

import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from secsplit.channel.message import KINDS
from secsplit.errors import ChannelError

#: Default limit on one encoded message (64 MiB): above gRPC's 4 MiB default, which large
#: activations exceed, and small enough that a hostile peer cannot make a party allocate gigabytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_RANK = 8
MAX_META_CHARS = 64 * 1024
#: the longest run id, party name or tag accepted (a peer's strings are bounded before anything stores them)
MAX_NAME_CHARS = 256
MAX_ERROR_CHARS = 2000
#: Kinds on the wire: the tensor kinds parties exchange, plus "control" (hello, resume, bye).
WIRE_KINDS = (*KINDS, "control")
PHASES = ("train", "eval")

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class CodecError(ChannelError):
    """A message could not be encoded or was rejected while decoding (malformed, oversize, unknown)."""


def _envelope_class():
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="secsplit/envelope.proto", package="secsplit", syntax="proto3")
    message = proto.message_type.add(name="Envelope")
    fields = [("run_id", F.TYPE_STRING), ("step", F.TYPE_INT64), ("kind", F.TYPE_STRING), ("src", F.TYPE_STRING),
              ("dst", F.TYPE_STRING), ("phase", F.TYPE_STRING), ("tag", F.TYPE_STRING), ("dtype", F.TYPE_STRING),
              ("shape", F.TYPE_INT64), ("data", F.TYPE_BYTES), ("meta", F.TYPE_STRING), ("error", F.TYPE_STRING),
              ("seq", F.TYPE_INT64)]
    for number, (name, kind) in enumerate(fields, 1):
        label = F.LABEL_REPEATED if name == "shape" else F.LABEL_OPTIONAL
        message.field.add(name=name, number=number, type=kind, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("secsplit.Envelope"))


Envelope = _envelope_class()


@dataclass
class WireMessage:
    """A decoded envelope: routing, the tensor (None for control messages) and control metadata."""

    run_id: str
    step: int
    kind: str
    src: str
    dst: str
    phase: str = "train"
    tag: str = ""
    tensor: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)
    error: str = ""
    seq: int = 0

    @property
    def payload_bytes(self) -> int:
        return 0 if self.tensor is None else self.tensor.numel() * self.tensor.element_size()


def encode(message: WireMessage, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Serialize ``message``; refuses dtypes off the allow-list and messages over ``max_bytes``.

    The tensor's bytes are appended as field ``data`` after the serialized header (protobuf fields
    may come in any order), so they are copied once, from the tensor into the message, instead of
    through a Python bytes object and the protobuf runtime (6x faster for a 300 KB activation).
    """
    if message.kind not in WIRE_KINDS:
        raise CodecError(f"unknown message kind {message.kind!r}; valid kinds: {', '.join(WIRE_KINDS)}")
    envelope = Envelope(run_id=message.run_id, step=message.step, kind=message.kind, src=message.src, dst=message.dst,
                        phase=message.phase, tag=message.tag, error=message.error, seq=message.seq)
    if message.meta:
        envelope.meta = json.dumps(message.meta, sort_keys=True)
    payload = None
    if message.tensor is not None:
        tensor = message.tensor.detach()
        if tensor.dtype not in _DTYPE_NAMES:
            raise CodecError(f"cannot send a {tensor.dtype} tensor; supported dtypes: {', '.join(DTYPES)}")
        size = tensor.numel() * tensor.element_size()
        if size > max_bytes:
            raise CodecError(f"{message.kind} tensor of {size} bytes exceeds the message size limit of {max_bytes} "
                             f"bytes; raise max_message_bytes on both sides")
        envelope.dtype = _DTYPE_NAMES[tensor.dtype]
        envelope.shape.extend(tensor.shape)
        payload = _tensor_bytes(tensor)
    header = envelope.SerializeToString()
    if payload is None or len(payload) == 0:  # proto3 leaves an empty bytes field out
        data = header
    else:
        data = b"".join((header, _DATA_TAG, _varint(len(payload)), payload))
    if len(data) > max_bytes:
        raise CodecError(f"encoded {message.kind} message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    return data


#: the key of field 10 (``data``), wire type 2 (length-delimited)
_DATA_TAG = bytes([(10 << 3) | 2])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tensor_bytes(tensor: torch.Tensor) -> memoryview | bytes:
    """The tensor's bytes, little-endian, C order: a view of its memory where it is already laid out so."""
    tensor = tensor.to("cpu").contiguous()
    if tensor.numel() == 0:
        return b""
    if sys.byteorder != "little" and tensor.element_size() > 1:  # the wire is little-endian
        return tensor.numpy().byteswap().tobytes()
    flat = tensor.reshape(-1).view(torch.uint8) if tensor.dtype != torch.bool else tensor.reshape(-1).to(torch.uint8)
    return memoryview(flat.numpy())


def decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> WireMessage:
    """Parse and validate one envelope; every malformed input ends in :class:`CodecError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"a message must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise CodecError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        envelope = Envelope.FromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as error:
        raise CodecError(f"malformed message: not a secsplit envelope ({error})") from None
    if envelope.kind not in WIRE_KINDS:
        raise CodecError(f"unknown message kind {envelope.kind[:40]!r}; valid kinds: {', '.join(WIRE_KINDS)}")
    if envelope.phase not in PHASES:
        raise CodecError(f"unknown phase {envelope.phase[:40]!r}; valid phases: {', '.join(PHASES)}")
    for name in ("run_id", "src", "dst", "tag"):
        if len(getattr(envelope, name)) > MAX_NAME_CHARS:
            raise CodecError(f"{name} of {len(getattr(envelope, name))} characters exceeds the limit of {MAX_NAME_CHARS}")
    meta = _decode_meta(envelope.meta)
    data = envelope.data  # each read of a bytes field copies it: read once
    tensor = _decode_tensor(envelope, data, max_bytes) if envelope.dtype or envelope.shape or data else None
    return WireMessage(run_id=envelope.run_id, step=envelope.step, kind=envelope.kind, src=envelope.src,
                       dst=envelope.dst, phase=envelope.phase, tag=envelope.tag, tensor=tensor, meta=meta,
                       error=envelope.error[:MAX_ERROR_CHARS], seq=envelope.seq)


def _decode_meta(text: str) -> dict:
    if not text:
        return {}
    if len(text) > MAX_META_CHARS:
        raise CodecError(f"control metadata of {len(text)} characters exceeds the limit of {MAX_META_CHARS}")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise CodecError(f"control metadata is not valid JSON ({type(error).__name__})") from None
    if not isinstance(meta, dict):
        raise CodecError(f"control metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def _decode_tensor(envelope, data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> torch.Tensor:
    dtype = DTYPES.get(envelope.dtype)
    if dtype is None:
        raise CodecError(f"unsupported tensor dtype {envelope.dtype[:40]!r}; supported: {', '.join(DTYPES)}")
    shape = list(envelope.shape)
    if len(shape) > MAX_RANK:
        raise CodecError(f"tensor rank {len(shape)} exceeds the limit of {MAX_RANK}")
    if any(d < 0 for d in shape):
        raise CodecError(f"tensor shape {shape} has a negative dimension")
    itemsize = torch.empty((), dtype=dtype).element_size()
    # an empty tensor's other dimensions still size its strides: bound them as if it held data
    if math.prod(max(d, 1) for d in shape) * itemsize > max_bytes:
        raise CodecError(f"tensor shape {shape} is larger than the message size limit of {max_bytes} bytes allows")
    expected = math.prod(shape) * itemsize
    if expected != len(data):
        raise CodecError(f"tensor data holds {len(data)} bytes but dtype {envelope.dtype} and shape {shape} "
                         f"need {expected}")
    if expected == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    if dtype == torch.bool:
        if bool((raw > 1).any()):
            raise CodecError("bool tensor holds bytes other than 0 and 1")
        return raw.to(torch.bool).reshape(shape)
    tensor = raw.view(dtype)
    if sys.byteorder != "little" and itemsize > 1:
        tensor = torch.from_numpy(tensor.numpy().byteswap())
    return tensor.reshape(shape)


def check_tensor(message: WireMessage, *, kind: str, shape: tuple[int, ...] | None = None,
                 dtype: torch.dtype | None = None, what: str = "") -> torch.Tensor:
    """The message's tensor, after checking it is the ``kind`` expected, with ``shape`` and ``dtype``."""
    what = what or kind
    if message.kind != kind:
        raise CodecError(f"expected a {kind} message, got {message.kind!r}")
    if message.tensor is None:
        raise CodecError(f"{what} message carries no tensor")
    if dtype is not None and message.tensor.dtype != dtype:
        raise CodecError(f"{what} has dtype {_DTYPE_NAMES.get(message.tensor.dtype)}, expected {_DTYPE_NAMES.get(dtype)}")
    if shape is not None and tuple(message.tensor.shape) != tuple(shape):
        raise CodecError(f"{what} has shape {tuple(message.tensor.shape)}, expected {tuple(shape)}")
    if message.tensor.is_floating_point() and not bool(torch.isfinite(message.tensor).all()):
        raise CodecError(f"{what} holds NaN or infinite values")
    return message.tensor
