"""External package feeds in the infrastructure YAML (``feeds:``): NuGet v3, a plain HTTP(S) directory, an S3
bucket. Credentials are references ({from_env: VAR} / {from_file: path}), never written in the YAML; ``ferry apply``
reads them once and stores them encrypted (``snapshots.feed_credentials``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from snapshots.model.common import Model, Name, SecretRef


class StoredSecret(Model):
    """A feed credential as the store keeps it: read from its reference at ``ferry apply`` and encrypted with the
    master key (as sensitive variables are); decrypted only on the executor, when the feed is used."""

    ciphertext: str = Field(description="The value encrypted by ferry (written by ferry, not by hand)")
    fingerprint: str = Field(description="Keyed fingerprint of the value (written by ferry)")


def _not_written_here(value: Any) -> Any:
    if isinstance(value, str | int | float):
        raise ValueError("a feed credential is a reference ({from_env: VAR} or {from_file: path}), never written "
                         "in the YAML")
    return value


Credential = Annotated[SecretRef | StoredSecret, BeforeValidator(_not_written_here)]

BUILT_IN = "built-in"
"""The name a project package's ``feed`` may use for ferry's own feed (the default)."""


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("url must start with http:// or https://")
    return value.rstrip("/")


class NugetFeed(Model):
    """A NuGet v3 feed: its service index names the flat container (PackageBaseAddress/3.0.0) ferry reads."""

    name: Name = Field(description="The feed's name, used by a project's packages: [{id, feed}]")
    kind: Literal["nuget"] = Field(description="nuget: a NuGet v3 feed")
    url: str = Field(description="The v3 service index, e.g. https://api.nuget.org/v3/index.json")
    username: str | None = Field(None, description="Basic-auth user name (with password)")
    password: Credential | None = Field(None, description="Basic-auth password or API key (sensitive): "
                                       "{from_env: VAR} or {from_file: path}, read and stored encrypted at ferry apply")
    timeout: float = Field(30, gt=0, le=3600, description="Seconds for each HTTP request")

    _url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))


class HttpFeed(Model):
    """A plain HTTP(S) directory of <Id>.<Version>.<ext> files; versions come from its listing page."""

    name: Name = Field(description="The feed's name, used by a project's packages: [{id, feed}]")
    kind: Literal["http"] = Field(description="http: packages downloaded from a base URL")
    url: str = Field(description="The directory's URL; files are <url>/<Id>.<Version>.<ext>, its listing (an "
                                 "index page with links) says which exist")
    username: str | None = Field(None, description="Basic-auth user name (with password)")
    password: Credential | None = Field(None, description="Basic-auth password (sensitive): {from_env: VAR} or "
                                       "{from_file: path}")
    timeout: float = Field(30, gt=0, le=3600, description="Seconds for each HTTP request")

    _url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))


class S3Feed(Model):
    """An S3-compatible bucket holding <prefix><Id>.<Version>.<ext> objects."""

    name: Name = Field(description="The feed's name, used by a project's packages: [{id, feed}]")
    kind: Literal["s3"] = Field(description="s3: packages in an S3 bucket")
    bucket: Name = Field(description="Bucket name")
    prefix: str = Field("", description="Key prefix of the package objects, e.g. packages/")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph…); default: AWS")
    region: str | None = Field(None, description="Region name, e.g. eu-west-1")
    access_key_id: Credential | None = Field(None, description="Access key id (sensitive reference, stored "
                                            "encrypted); default: the executor's usual AWS credentials")
    secret_access_key: Credential | None = Field(None, description="Secret access key (sensitive reference, "
                                                "stored encrypted)")
    timeout: float = Field(30, gt=0, le=3600, description="Seconds to connect and for each read")


ExternalFeed = Annotated[NugetFeed | HttpFeed | S3Feed, Field(discriminator="kind")]


def _unique(feeds: list[NugetFeed | HttpFeed | S3Feed]) -> list[NugetFeed | HttpFeed | S3Feed]:
    names = [f.name for f in feeds]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"feed {dup!r} is defined twice")
    if BUILT_IN in names:
        raise ValueError(f"{BUILT_IN!r} names ferry's own feed; give the external feed another name")
    return feeds


Feeds = Annotated[list[ExternalFeed], AfterValidator(_unique)]
FEEDS_DESCRIPTION = ("External package feeds (kind nuget | http | s3) that a project's packages name with "
                     "packages: [{id: X, feed: NAME}]; the built-in feed is the default")


def split_package_entries(data: Any) -> Any:
    """``packages: [{id: OctoFX.Web, feed: nuget-main}, Other]`` → ``packages: [OctoFX.Web, Other]`` plus
    ``package_feeds: {OctoFX.Web: nuget-main}`` (a stored revision keeps the ids a plain list)."""
    if not isinstance(data, dict) or not isinstance(data.get("packages", []), list):
        return data
    ids: list[Any] = []
    feeds = data.get("package_feeds") or {}
    if not isinstance(feeds, dict):
        return data  # the field's own validation reports it
    feeds = dict(feeds)
    for item in data.get("packages", []):
        if isinstance(item, dict):
            unknown = set(item) - {"id", "feed"}
            if unknown or not isinstance(item.get("id"), str):
                raise ValueError(f"a package entry is an id or {{id: ..., feed: ...}}, not {item!r}")
            ids.append(item["id"])
            if item.get("feed") and item["feed"] != BUILT_IN:
                feeds[item["id"]] = item["feed"]
        else:
            ids.append(item)
    stray = next((k for k in feeds if k not in ids), None)
    if stray is not None:
        raise ValueError(f"package_feeds names {stray!r}, which is not one of the project's packages")
    if "packages" not in data and not feeds:
        return data
    return {**data, "packages": ids, "package_feeds": feeds}


PACKAGES_DESCRIPTION = ("Package ids a release pins: an id (the built-in feed) or {id: OctoFX.Web, feed: NAME} "
                        "for an external feed of the infrastructure's feeds:")
PACKAGES_SCHEMA: dict[str, Any] = {"items": {"anyOf": [
    {"type": "string", "description": "A package id in the built-in feed"},
    {"type": "object", "additionalProperties": False, "required": ["id"], "properties": {
        "id": {"type": "string", "description": "The package id"},
        "feed": {"type": "string", "description": "An external feed of the infrastructure's feeds: (or built-in)"}},
     "description": "A package from a named feed"}]}}
"""What an editor should accept in ``packages:`` (the model stores plain ids; see ``split_package_entries``)."""
PACKAGE_FEEDS_DESCRIPTION = ("Package id → external feed name (filled from packages: [{id, feed}]; a package not "
                             "named here comes from the built-in feed)")
