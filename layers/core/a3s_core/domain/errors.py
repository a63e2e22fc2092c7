"""Domain errors. The API maps each to one HTTP status in one place (functions/api)."""


class A3SError(Exception):
    status = 500
    code = "internal_error"


class BadRequest(A3SError, ValueError):
    status = 400
    code = "bad_request"


class ModelNotAllowed(BadRequest):
    code = "model_not_allowed"


class NotFound(A3SError):
    status = 404
    code = "not_found"


class Conflict(A3SError):
    """A conditional write lost: the item changed underneath us."""

    status = 409
    code = "conflict"


class Interrupted(Exception):
    """A run's checkpoint lost to a request made from outside since the driver last read it (a
    control request, a finished task's nudge): the run now holds what changed; save it again."""


class Unauthorized(A3SError):
    status = 401
    code = "unauthorized"


class Invalid(A3SError, ValueError):
    """Well-formed, but not a value this request may carry."""

    status = 422
    code = "validation_error"


class BadJson(BadRequest):
    code = "bad_json"


class UnsupportedMediaType(A3SError):
    status = 415
    code = "unsupported_media_type"


class ItemTooLarge(A3SError):
    """A write would make a stored item outgrow DynamoDB's 400 KB: the request asked for too much."""

    status = 413
    code = "item_too_large"
