"""Options a plugin declares: converter options (``--option KEY=VALUE``),
deploy-target flags, comparison-rule keys. One type, one parser, so every
unknown or ill-typed value is refused with the same one-line message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
#: The value types an option may declare.
TYPES = (str, int, float, bool, Path)


@dataclass(frozen=True)
class OptionSpec:
    """One named, typed setting with a default and a help line."""

    name: str
    type: type = str
    default: Any = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"option {self.name!r}: type must be one of {', '.join(t.__name__ for t in TYPES)}")

    @property
    def flag(self) -> str:
        """The command-line spelling (``--instance-type``)."""
        return "--" + self.name.replace("_", "-")

    def parse(self, value: Any) -> Any:
        """``value`` as this option's type; a str is parsed, anything else
        must already be of the type. Raises ValueError."""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise ValueError(value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, self.type) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self.type(value.strip())
        raise ValueError(value)

    def describe(self) -> str:
        """``name (int, default 3): help``."""
        default = "" if self.default is None else f", default {self.default!r}"
        return f"{self.name} ({self.type.__name__}{default})" + (f": {self.help}" if self.help else "")


def parse_options(declared: Sequence[OptionSpec], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Typed values for ``given`` plus the defaults of the options not given.

    ``where`` names the owner in messages (``converter 'sklearn'``). An unknown
    key or a value of the wrong type is a UsageError (exit 2) naming the
    known options.
    """
    by_name = {o.name: o for o in declared}
    known = ", ".join(o.describe().split(":")[0] for o in declared) or "none"
    values = {o.name: o.default for o in declared if o.default is not None}
    for key, value in given.items():
        option = by_name.get(key)
        if option is None:
            raise UsageError(f"{where} has no option {key!r} (known: {known})")
        try:
            values[key] = option.parse(value)
        except (TypeError, ValueError):
            raise UsageError(
                f"{where}: option {key}={value!r} is not a {option.type.__name__} (known: {known})"
            ) from None
    return values
