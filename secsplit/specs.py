"""Component specs as one string, for the CLI and config files: ``name:key=value,key=value``.

``nopeek:alpha=0.5`` or ``noise:mechanism=laplace,scale=0.5,clip=1``. Values become int, float,
bool (true/false) or stay strings; nothing is evaluated.
"""

from __future__ import annotations

from secsplit.errors import ConfigError


def parse_value(text: str):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_spec(spec: str) -> tuple[str, dict]:
    """Split ``name:key=value,...`` into the name and a dict of typed parameters."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty component spec {spec!r}; expected name or name:key=value,...")
    name, _, rest = spec.strip().partition(":")
    params: dict = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad parameter {item!r} in {spec!r}; expected key=value")
        key = key.strip().replace("-", "_")
        if key in params:
            raise ConfigError(f"parameter {key!r} given twice in {spec!r}")
        params[key] = parse_value(value)
    return name.strip(), params
