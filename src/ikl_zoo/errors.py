"""Errors a user can act on: a ``problem`` and the ``fix`` that mends it, printed as one line without a
traceback; library callers can catch ``IklZooError`` and read its fields instead of parsing the text."""

from __future__ import annotations


class IklZooError(Exception):
    """A problem with the user's input or environment, not a bug; ``fix`` says what to do about it."""

    def __init__(self, problem: str, *, fix: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return self.problem if not self.fix else f"{self.problem}: {self.fix}"


class UnknownModelError(IklZooError, KeyError):
    """An id the registry does not hold for that dataset, nor a zoo folder."""


class CheckpointError(IklZooError):
    """A checkpoint that cannot be used: HTML instead of weights, truncated, wrong shapes or classes."""


class ChecksumMismatchError(CheckpointError):
    """Weights whose sha256 differs from the one pinned for them."""


class DatasetNotFoundError(IklZooError):
    """Test images that are neither in the data dir nor allowed to be downloaded."""


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
