"""Errors a user can act on: each message is one line that names the fix.

The CLI prints them without a traceback; library callers can catch ``IklZooError``.
"""

from __future__ import annotations


class IklZooError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class UnknownModelError(IklZooError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(IklZooError):
    """A checkpoint that cannot be used: HTML instead of weights, truncated, wrong shapes or classes."""


class ChecksumMismatchError(CheckpointError):
    pass


class DatasetNotFoundError(IklZooError):
    pass


class DataError(DatasetNotFoundError):
    """A data dir that is there but unusable: damaged or foreign files, or a folder that cannot be written."""


class DownloadError(IklZooError):
    """Weights that could not be fetched from any host (Hub, Google Drive) nor found in a cache."""


class PublishError(IklZooError):
    """A zoo folder that cannot be pushed, or a Hub that refused the upload."""


class EvaluationError(IklZooError):
    """Arguments an evaluation cannot run with, or a run directory made with different arguments."""


def first_line(error: BaseException) -> str:
    """The first non-blank line of an error from another library (or its type), for a one-line message."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
