"""What a client and an inference server agree on before served split inference: the session spec.

Both sides describe the same saved split model (registered name, shapes, cuts); the client proposes
the spec in its hello message (plain JSON, parsed, never evaluated) and the server accepts it only
if it describes the checkpoint it serves, naming any mismatch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from secsplit.errors import ConfigError
from secsplit.optim import OptimizerSpec

#: Chain topologies whose checkpoints can be served: the client owns the first (and, in U-shape,
#: the last) segment; the server owns everything between.
SERVED_TOPOLOGIES = ("vanilla", "ushape")
PROTOCOL_VERSION = 1
#: Bounds on what a proposed spec may make the other side allocate.
MAX_INPUT_ELEMENTS = 1 << 22
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class SessionSpec:
    """Everything both sides need to build their segments identically."""

    model: str
    input_shape: tuple[int, ...]
    num_classes: int
    topology: str = "vanilla"
    cuts: tuple[str, ...] = ()
    seed: int = 0
    optimizer: dict = field(default_factory=lambda: OptimizerSpec().to_dict())
    model_options: dict = field(default_factory=dict)
    topology_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.topology not in SERVED_TOPOLOGIES:
            raise ConfigError(f"served split inference takes topology {', '.join(SERVED_TOPOLOGIES)}, "
                              f"not {str(self.topology)[:40]!r}")
        try:
            object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
            object.__setattr__(self, "cuts", tuple(str(c) for c in self.cuts))
        except (TypeError, ValueError):
            raise ConfigError(f"bad input_shape {str(self.input_shape)[:80]} or cuts {str(self.cuts)[:80]}") from None
        if not self.input_shape or any(d < 1 for d in self.input_shape) or math.prod(self.input_shape) > MAX_INPUT_ELEMENTS:
            raise ConfigError(f"input_shape {str(self.input_shape)[:80]} must be positive with at most "
                              f"{MAX_INPUT_ELEMENTS} elements")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or not 2 <= self.num_classes <= MAX_CLASSES:
            raise ConfigError(f"num_classes must be an integer in 2..{MAX_CLASSES}, got {str(self.num_classes)[:40]}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an integer in 0..2**63-1, got {str(self.seed)[:40]}")
        if not all(isinstance(d, dict) for d in (self.optimizer, self.model_options, self.topology_options)):
            raise ConfigError("optimizer, model_options and topology_options must be JSON objects")
        if self.topology_options:
            raise ConfigError(f"served split inference takes no topology options, got {sorted(self.topology_options)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"], d["cuts"] = list(self.input_shape), list(self.cuts)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> SessionSpec:
        if not isinstance(data, dict):
            raise ConfigError("session spec must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown session settings {sorted(unknown)}; valid: {sorted(known)}")
        missing = {"model", "input_shape", "num_classes"} - set(data)
        if missing:
            raise ConfigError(f"session spec lacks {sorted(missing)}")
        try:
            return cls(**{**data, "input_shape": tuple(data["input_shape"]), "cuts": tuple(data.get("cuts", ()))})
        except TypeError as error:
            raise ConfigError(f"bad session spec: {error}") from None

    def build(self):
        """The full chain topology on this side (each side then uses only its own party's segments)."""
        from secsplit.models import create_model
        from secsplit.topologies import build_topology

        try:
            optimizer = OptimizerSpec(**self.optimizer)
            model = create_model(self.model, input_shape=self.input_shape, num_classes=self.num_classes, seed=self.seed,
                                 **self.model_options)
        except TypeError as error:
            raise ConfigError(f"bad session spec: {error}") from None
        # the common keywords go to every topology, which uses those that apply (vertical: its per-client models)
        return build_topology(self.topology, model, cuts=list(self.cuts) or None, optimizer=optimizer,
                              model_name=self.model, seed=self.seed, model_options=self.model_options or None,
                              **self.topology_options)
