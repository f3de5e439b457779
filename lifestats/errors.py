"""Errors that end a run, each with the exit code the command line returns for it."""

from __future__ import annotations


class LifestatsError(Exception):
    """Base class: a problem that ends the job with a clear message and an exit code."""

    exit_code = 1


class ConfigError(LifestatsError):
    """Bad usage, a bad config file, an unknown key or a bad value (exit 2, before any request)."""

    exit_code = 2


class CheckpointMismatch(ConfigError):
    """The checkpoint belongs to a run whose results would differ; resuming would mix two jobs."""


class ApiError(LifestatsError):
    """The API failed past every retry (exit 3). The message names the URL and the position.

    ``permanent``: running the same command again will not help until something changes (a refused
    token, a wrong URL: HTTP 4xx). ``status``: the HTTP status behind it, when there was one.
    """

    exit_code = 3

    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


class TransientApiError(Exception):
    """One failed request that may succeed when tried again (5xx, reset, timeout, bad body, 429)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
