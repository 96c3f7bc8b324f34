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
        factory = self.lookup(name)
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as error:
            valid = ", ".join(self.parameters(name)) or "(none)"
            raise ConfigError(f"bad parameters for {self.kind} {name!r}: {error}; valid parameters: {valid}") from None
        return factory(**kwargs)

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
