"""The wire codec: exact round trips, precise refusals, and fuzzing (every input ends cleanly)."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secsplit.channel.codec import (
    DTYPES,
    CodecError,
    Envelope,
    WireMessage,
    check_tensor,
    decode,
    encode,
)


def _message(tensor=None, **kw) -> WireMessage:
    base = dict(run_id="run-1", step=7, kind="activation", src="client", dst="server", phase="train", tensor=tensor)
    base.update(kw)
    return WireMessage(**base)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("shape", [(3, 4), (2, 1, 5, 5), (0, 3), ()])
def test_round_trip_is_bit_exact(dtype, shape):
    generator = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        tensor = torch.rand(shape, generator=generator) > 0.5
    elif dtype.is_floating_point:
        tensor = torch.randn(shape, generator=generator).to(dtype)
    else:
        tensor = torch.randint(-100 if dtype != torch.uint8 else 0, 100, shape, generator=generator).to(dtype)
    out = decode(encode(_message(tensor)))
    assert out.tensor.dtype == dtype and tuple(out.tensor.shape) == shape
    assert torch.equal(out.tensor, tensor)
    assert (out.run_id, out.step, out.kind, out.src, out.dst, out.phase) == ("run-1", 7, "activation", "client", "server", "train")


def test_non_contiguous_tensors_travel_as_their_values():
    tensor = torch.arange(12.0).reshape(3, 4).T
    assert torch.equal(decode(encode(_message(tensor))).tensor, tensor)


def test_control_metadata_is_json_and_payload_free():
    out = decode(encode(_message(None, kind="control", tag="hello", meta={"spec": {"model": "lenet"}, "n": [1, 2]})))
    assert out.tensor is None and out.meta == {"spec": {"model": "lenet"}, "n": [1, 2]} and out.tag == "hello"
    assert out.payload_bytes == 0


def test_size_limits_on_both_ends():
    tensor = torch.zeros(1000)  # 4000 bytes
    with pytest.raises(CodecError, match="exceeds the message size limit of 1000 bytes"):
        encode(_message(tensor), max_bytes=1000)
    data = encode(_message(tensor))
    with pytest.raises(CodecError, match="exceeds the limit of 2000 bytes"):
        decode(data, max_bytes=2000)


def _raw(**fields) -> bytes:
    base = dict(run_id="r", step=1, kind="activation", src="client", dst="server", phase="train")
    base.update(fields)
    return Envelope(**base).SerializeToString()


@pytest.mark.parametrize("fields, problem", [
    ({"kind": "pickle"}, "unknown message kind 'pickle'"),
    ({"phase": "deploy"}, "unknown phase 'deploy'"),
    ({"dtype": "object", "shape": [1], "data": b"\x00"}, "unsupported tensor dtype 'object'"),
    ({"dtype": "float32", "shape": [2, 2], "data": b"\x00" * 15}, "holds 15 bytes but dtype float32 and shape \\[2, 2\\] need 16"),
    ({"dtype": "float32", "shape": [-1, 4], "data": b""}, "negative dimension"),
    ({"dtype": "float32", "shape": [1] * 9, "data": b"\x00" * 4}, "rank 9 exceeds the limit of 8"),
    ({"dtype": "float32", "shape": [2**40, 2**40], "data": b""}, "larger than the message size limit"),
    ({"dtype": "float32", "shape": [0, 2**62, 2**62], "data": b""}, "larger than the message size limit"),
    ({"run_id": "r" * 257}, "run_id of 257 characters exceeds the limit of 256"),
    ({"dtype": "bool", "shape": [2], "data": b"\x00\x07"}, "bool tensor holds bytes other than 0 and 1"),
    ({"kind": "control", "meta": "{not json"}, "not valid JSON"),
    ({"kind": "control", "meta": "[1, 2]"}, "must be a JSON object"),
])
def test_malformed_envelopes_are_refused_by_name(fields, problem):
    with pytest.raises(CodecError, match=problem):
        decode(_raw(**fields))


def test_garbage_and_wrong_types_are_refused():
    with pytest.raises(CodecError, match="not a secsplit envelope"):
        decode(b"\xff\xff\xff\xff")
    with pytest.raises(CodecError, match="must be bytes"):
        decode("a string")  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="unknown message kind"):
        encode(_message(torch.zeros(1), kind="python-object"))
    with pytest.raises(CodecError, match="cannot send a torch.complex64"):
        encode(_message(torch.zeros(2, dtype=torch.complex64)))


def test_check_tensor_names_kind_shape_dtype_and_non_finite_values():
    message = decode(encode(_message(torch.zeros(2, 3))))
    assert check_tensor(message, kind="activation", shape=(2, 3), dtype=torch.float32).shape == (2, 3)
    with pytest.raises(CodecError, match="expected a gradient message"):
        check_tensor(message, kind="gradient")
    with pytest.raises(CodecError, match=r"has shape \(2, 3\), expected \(2, 4\)"):
        check_tensor(message, kind="activation", shape=(2, 4))
    with pytest.raises(CodecError, match="has dtype float32, expected int64"):
        check_tensor(message, kind="activation", dtype=torch.int64)
    bad = decode(encode(_message(torch.tensor([1.0, float("nan")]))))
    with pytest.raises(CodecError, match="NaN or infinite"):
        check_tensor(bad, kind="activation")


def _decode_cleanly(data: bytes) -> None:
    """The property every received byte string must satisfy: a message or a CodecError, nothing else."""
    try:
        message = decode(data, max_bytes=1 << 16)
    except CodecError:
        return
    assert isinstance(message, WireMessage)
    if message.tensor is not None:
        assert message.tensor.numel() * message.tensor.element_size() <= len(data)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data):
    _decode_cleanly(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(["activation", "gradient", "labels", "control", "x"]), dtype=st.sampled_from([*DTYPES, "?"]),
       shape=st.lists(st.integers(-3, 2**33), max_size=10), data=st.binary(max_size=64), meta=st.text(max_size=40))
def test_fuzz_structured_envelopes(kind, dtype, shape, data, meta):
    _decode_cleanly(Envelope(kind=kind, dtype=dtype, shape=shape, data=data, meta=meta, phase="train").SerializeToString())


def test_fuzz_mutated_valid_messages():
    rng = random.Random(0)
    seeds = [encode(_message(torch.randn(4, 3))), encode(_message(torch.arange(5), kind="labels")),
             encode(_message(None, kind="control", tag="hello", meta={"spec": {"model": "mlp"}}))]
    for case in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            action = rng.random()
            if action < 0.5 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif action < 0.75:
                data = data[: rng.randrange(len(data) + 1)]
            else:
                position = rng.randrange(len(data) + 1)
                data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        _decode_cleanly(bytes(data))
