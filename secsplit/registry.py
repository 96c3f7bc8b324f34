"""One tiny name -> factory registry, reused for data sets, models, topologies, defenses and attacks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from secsplit.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps string names to factories, so configs and the CLI name components by string.

    Args:
        kind: what the registry holds ("data set", "model", ...); used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a class or function under ``name``."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def lookup(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``; a clear error listing valid names otherwise."""
        try:
            return self._factories[name]
        except KeyError:
            valid = ", ".join(self.names()) or "(none registered)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def create(self, name: str, /, **kwargs) -> T:
        """Build the component registered under ``name`` with ``kwargs``.

        Parameters are checked against the factory's signature first, so a misspelt one is a
        clear error listing the valid ones rather than a TypeError from inside the factory.
        """
        return self.lookup(name)(**self.check(name, kwargs))

    def check(self, name: str, kwargs: dict, *, partial: bool = False) -> dict:
        """``kwargs`` checked against the factory's signature, with simple typed values converted.

        A parameter annotated (or defaulting to) int, float or bool gets its value converted from
        text ("0.5" -> 0.5) and refused with a one-line message when it is not one ("nopeek:
        alpha must be a number, got 'abc'"), so a bad value never reaches the factory. With
        ``partial``, required parameters may be missing (options checked before the rest is known).
        """
        factory = self.lookup(name)
        signature = inspect.signature(factory)
        try:
            (signature.bind_partial if partial else signature.bind)(**kwargs)
        except TypeError as error:
            valid = ", ".join(self.parameters(name)) or "(none)"
            raise ConfigError(f"bad parameters for {self.kind} {name!r}: {error}; valid parameters: {valid}") from None
        checked = dict(kwargs)
        for key, value in kwargs.items():
            parameter = signature.parameters.get(key)
            if parameter is not None:
                checked[key] = convert_value(parameter, value, where=f"{name}: {key}")
        return checked

    def parameters(self, name: str) -> list[str]:
        """Names of the keyword parameters the component ``name`` accepts."""
        signature = inspect.signature(self.lookup(name))
        return [p.name for p in signature.parameters.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


_SIMPLE = {"int", "float", "bool", "str", "None"}
_EXPECTED = {"float": "a number", "int": "an integer", "bool": "true or false", "str": "text"}


def _declared_types(parameter: inspect.Parameter) -> set[str] | None:
    """The simple types a parameter declares ({"float", "None"}), or None when they cannot be told."""
    annotation = parameter.annotation
    if annotation is not parameter.empty:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        tokens = {t.strip() for t in text.split("|")}
        return tokens if tokens <= _SIMPLE else None
    default = parameter.default
    if default is parameter.empty:
        return None
    if default is None:
        return None
    kind = type(default).__name__
    return {kind} if kind in _SIMPLE else None


def convert_value(parameter: inspect.Parameter, value, *, where: str):
    """``value`` converted to the simple type ``parameter`` declares; ConfigError naming ``where`` if it is not one."""
    kinds = _declared_types(parameter)
    if kinds is None or value is None and "None" in kinds:
        return value
    if "float" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if "int" in kinds and isinstance(value, int) and not isinstance(value, bool):
        return value
    if "int" in kinds and isinstance(value, float) and value.is_integer() and "float" not in kinds:
        return int(value)
    if "bool" in kinds and isinstance(value, bool):
        return value
    if "str" in kinds and isinstance(value, str):
        return value
    if isinstance(value, str):
        text = value.strip()
        for kind, cast in (("int", int), ("float", float)):
            if kind in kinds:
                try:
                    return cast(text)
                except ValueError:
                    pass
        if "bool" in kinds and text.lower() in ("true", "false"):
            return text.lower() == "true"
    expected = " or ".join(_EXPECTED[k] for k in ("float", "int", "bool", "str") if k in kinds)
    if "None" in kinds:
        expected += " or none"
    raise ConfigError(f"{where} must be {expected}, got {value!r}")
