"""Building blocks shared by the project and infrastructure models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints


class Model(BaseModel):
    """Strict base: unknown keys are refused (a typo must not be silently ignored); values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _scalar_to_str(value: Any) -> Any:
    """YAML gives ints/bools for ``80`` or ``true``; Octopus variables are strings, so convert them."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return str(value)
    return value


def _one_or_many(value: Any) -> Any:
    """Let a scope or role list be written as a single string."""
    return [value] if isinstance(value, str) else value


def _no_control_characters(value: str) -> str:
    """A name reaches log lines, tables and file paths: a newline in a target's name could forge a log line."""
    bad = next((ch for ch in value if ord(ch) < 32 or 127 <= ord(ch) < 160 or ch in "\u2028\u2029"), None)
    if bad is not None:
        raise ValueError(f"a name may not contain control characters (found {bad!r})")
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                 AfterValidator(_no_control_characters)]
ScalarText = Annotated[str, BeforeValidator(_scalar_to_str)]
NameList = Annotated[list[Name], BeforeValidator(_one_or_many)]


class FromEnv(Model):
    """A value read from an environment variable (of `ferry apply` for variables, of the worker for
    target credentials)."""

    from_env: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = Field(
        description="Name of the environment variable holding the value, e.g. OCTOFX_DB_PASSWORD")


class FromFile(Model):
    """A value read from a file (trailing newline stripped)."""

    from_file: Name = Field(
        description="Path of a file holding the value (relative to the YAML file; trailing newline dropped)")


SecretRef = FromEnv | FromFile
"""A credential kept outside the YAML: ferry stores the reference, never the secret itself."""

Seconds = Annotated[float, Field(ge=0, le=86_400)]
