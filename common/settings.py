"""Reading settings from the environment, in one place per service.

Services declare a frozen dataclass and build it with :class:`EnvReader`, which fails fast with a
message naming the variable. Secrets are wrapped in :class:`Secret` so that ``repr`` and logs never
show them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import structlog

from common.errors import ConfigError

log = structlog.get_logger(__name__)


class Secret:
    """A string that hides itself from repr/str; call :meth:`get` where the value is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class EnvReader:
    """Typed accessors over an environment mapping (``os.environ`` by default).

    A default of ``None`` means the variable is required. ``renamed`` maps a variable's name to the
    name it had before (``{"SHUTDOWN_DEADLINE_S": "AUTH_SHUTDOWN_DEADLINE_S"}``): for one release the
    old name is still read when the new one is not set, with a ``setting_renamed`` warning.
    """

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, renamed: Mapping[str, str] | None = None
    ) -> None:
        self._env = os.environ if environ is None else environ
        self._renamed = dict(renamed or {})
        self.deprecated_used: list[str] = []
        """Old names that were read (each also logged)."""

    def _raw(self, name: str, required: bool) -> str | None:
        value = self._env.get(name)
        old = self._renamed.get(name)
        if (value is None or value.strip() == "") and old is not None:
            value = self._env.get(old)
            if value is not None and value.strip() != "":
                self.deprecated_used.append(old)
                log.warning("setting_renamed", old=old, new=name, note=f"{old} is deprecated: set {name}")
        elif old is not None and self._env.get(old, "").strip():
            log.warning("setting_renamed_ignored", old=old, new=name, note=f"{name} is set; {old} is ignored")
        if value is None or value.strip() == "":
            if required:
                raise ConfigError(f"environment variable {name} is required but not set")
            return None
        return value.strip()

    def optional(self, name: str) -> str | None:
        return self._raw(name, required=False)

    def string(self, name: str, default: str | None = None) -> str:
        value = self._raw(name, required=default is None)
        return value if value is not None else str(default)

    def integer(self, name: str, default: int | None = None) -> int:
        value = self._raw(name, required=default is None)
        if value is None:
            return int(default or 0)
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"environment variable {name} must be an integer, got {value!r}") from None

    def number(self, name: str, default: float | None = None) -> float:
        value = self._raw(name, required=default is None)
        if value is None:
            return float(default or 0.0)
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"environment variable {name} must be a number, got {value!r}") from None

    def boolean(self, name: str, default: bool | None = None) -> bool:
        value = self._raw(name, required=default is None)
        if value is None:
            return bool(default)
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"environment variable {name} must be true or false, got {value!r}")

    def strings(self, name: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = self._raw(name, required=default is None)
        if value is None:
            return tuple(default or ())
        return tuple(part.strip() for part in value.split(",") if part.strip())

    def secret(self, name: str, default: str | None = None) -> Secret:
        value = self._raw(name, required=default is None)
        return Secret(value if value is not None else str(default))
