"""Errors that end a run, each with the exit code the command line returns for it."""

from __future__ import annotations

# HTTP statuses that the same request will meet again: running the job again does not help.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 416, 422})
# Statuses that mean the API did not accept the credentials.
CREDENTIAL_STATUSES = frozenset({401, 403})


class LifestatsError(Exception):
    """Base class: a problem that ends the job with a clear message and an exit code."""

    exit_code = 1


class ConfigError(LifestatsError):
    """Bad usage, a bad config file, an unknown key or a bad value (exit 2, before any request)."""

    exit_code = 2


class CheckpointMismatch(ConfigError):
    """The checkpoint belongs to a run whose results would differ; resuming would mix two jobs."""


class StateDirError(LifestatsError):
    """The state dir cannot be used or written (read-only, full, not a checkpoint of this version).

    Exit 2 when it is the user's choice of state dir that is unusable from the start, else 1; either
    way the checkpoint is left as its last commit made it, so the same command resumes once fixed.
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ApiError(LifestatsError):
    """The API failed past every retry (exit 3). The message names the URL and the position.

    ``status`` is the HTTP status when the API answered one. ``resumable`` says whether running the
    same command again can help (a server that was down) or not (a 401, 403, 404 or other status of
    :data:`PERMANENT_STATUSES` is met again).
    ``fresh``: a resume would ask for the same refused page again (a cursor that expired); only a crawl
    started over (``--fresh``) can go on.
    """

    exit_code = 3

    def __init__(
        self, message: str, *, status: int | None = None, resumable: bool | None = None, fresh: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.fresh = fresh
        self.resumable = False if fresh else resumable if resumable is not None else status not in PERMANENT_STATUSES


class TransientApiError(Exception):
    """One failed request that may succeed when tried again (5xx, reset, timeout, bad body, 429)."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status  # the HTTP status, when the API answered one (a 5xx, a 429)
