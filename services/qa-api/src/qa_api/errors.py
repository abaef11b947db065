"""qa-api's domain errors, and how DSPy's LM errors map onto them.

Each has a status that says whose fault it was: 4xx for the client, 502/503/504 for the LM behind us. The
envelope and the handlers are the shared kit's (`qa_core.web`).
"""

from __future__ import annotations

from dspy.utils.exceptions import (
    AdapterParseError,
    LMError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMTransportError,
)

from qa_core.web.errors import InvalidRequest, ServiceError


class Overloaded(ServiceError):
    status, code = 429, "overloaded"


class ProgramNotLoaded(ServiceError):
    status, code = 503, "not_ready"


class VariantUnavailable(ServiceError):
    status, code = 409, "variant_unavailable"


class RequestTimedOut(ServiceError):
    status, code = 504, "timeout"


class LMUnavailable(ServiceError):
    status, code = 503, "lm_unavailable"


class LMBadResponse(ServiceError):
    status, code = 502, "lm_bad_response"


class LMTimedOut(ServiceError):
    status, code = 504, "lm_timeout"


class InvalidItem(InvalidRequest):
    """One bad item of a batch; reported in place, the other items are still answered."""


# --8<-- [start:lm-errors]
def _timed_out(error: BaseException) -> bool:
    """DSPy reports a read timeout as a transport error; the cause chain still says it was a timeout."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, TimeoutError | LMTimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def from_lm_error(error: Exception, retry_after: int) -> ServiceError:
    """Map DSPy's typed LM errors to what a client can act on."""
    if _timed_out(error):
        return LMTimedOut("The language model did not answer in time.")
    if isinstance(error, LMRateLimitError):
        return LMUnavailable("The language model is rate limiting us; retry later.", retry_after)
    if isinstance(error, LMTransportError):
        return LMUnavailable("The language model cannot be reached.", retry_after)
    if isinstance(error, LMServerError):
        return LMBadResponse("The language model failed while answering.")
    if isinstance(error, AdapterParseError):
        return LMBadResponse("The language model's answer could not be parsed.")
    if isinstance(error, LMError):
        return LMBadResponse(f"The language model refused the request: {type(error).__name__}.")
    raise error


# --8<-- [end:lm-errors]
