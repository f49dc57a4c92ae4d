"""One root exception for the feed engine, carrying Stream's error fields.

Stream's clients map ``code`` to an exception class and read ``detail``; the HTTP status travels with
the error so the API layer renders it without a lookup table of its own.
"""

from __future__ import annotations


class FeedError(Exception):
    """Root of the package's errors; ``status``, ``code`` and ``exception`` follow Stream's table."""

    status = 500
    code = 0
    exception = "StreamApiException"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ApiKeyError(FeedError):
    status, code, exception = 401, 2, "ApiKeyException"


class SignatureError(FeedError):
    status, code, exception = 401, 3, "SignatureException"


class InputError(FeedError):
    status, code, exception = 400, 4, "InputException"


class FeedConfigError(FeedError):
    status, code, exception = 400, 6, "FeedConfigException"


class RankingError(FeedError):
    status, code, exception = 400, 11, "RankingException"


class DoesNotExistError(FeedError):
    status, code, exception = 404, 16, "DoesNotExistException"


class NotAllowedError(FeedError):
    status, code, exception = 403, 17, "NotAllowedException"


class MethodNotAllowedError(FeedError):
    status, code, exception = 405, 4, "InputException"


class BodyTooLargeError(FeedError):
    status, code, exception = 413, 4, "InputException"
