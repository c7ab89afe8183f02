"""The installed version of a distribution, the one way records, metric metadata and the
environment name it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def dist_version(dist: str, missing: str | None = "unknown") -> str | None:
    """``importlib.metadata.version(dist)``, or ``missing`` when it is not installed."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return missing
