"""User-facing errors.

Anything the user can fix (a bad metaparameter, YAML key, data file or storage URL)
raises a subclass of :class:`DseError`. The CLI prints its message as one line and
exits with code 2; it never shows a traceback for these.
"""


class DseError(Exception):
    """An error caused by user input; its message is one self-contained line."""

    exit_code = 2


class SpecError(DseError):
    """Metaparameters or macro choices that do not describe a valid network."""


class DataError(DseError):
    """A dataset that is missing, corrupt, or inconsistent."""


class ConfigError(DseError):
    """A config or sweep file that does not match the schema."""


class StorageError(DseError):
    """A study storage URL or database that cannot be used."""


def config_error(err: "pydantic.ValidationError", source: str) -> ConfigError:  # noqa: F821
    """One line from a pydantic error: ``source: key.path: what is wrong`` (first problem only)."""
    first = err.errors()[0]
    path = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return ConfigError(f"{source}: {path}: {message}{extra}")
