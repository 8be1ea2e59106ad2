"""One error root for the domain; the HTTP middleware maps each kind to a status code once."""

from __future__ import annotations

__all__ = [
    "AuthFailed",
    "BridgeError",
    "ConfigError",
    "NotFound",
    "PayloadInvalid",
    "PayloadTooLarge",
    "StoreUnavailable",
    "UnsupportedMediaType",
]


class BridgeError(Exception):
    """Root of every error alertbridge raises on purpose."""

    status = 500
    code = "internal"

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "reason": str(self)}


class ConfigError(BridgeError):
    """The configuration is invalid; `problems` lists every `path: reason` found at once."""

    code = "config_invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class PayloadInvalid(BridgeError):
    """A request body is not what the source accepts. `field` is a dotted path into the body."""

    status = 400
    code = "payload_invalid"

    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.status = status

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "field": self.field, "reason": self.reason}


class PayloadTooLarge(PayloadInvalid):
    code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__("body", f"larger than the limit of {limit} bytes", status=413)


class UnsupportedMediaType(PayloadInvalid):
    code = "unsupported_media_type"

    def __init__(self, got: str) -> None:
        super().__init__("Content-Type", f"must be application/json, got {got or 'nothing'!r}", status=415)


class AuthFailed(BridgeError):
    status = 401
    code = "unauthorized"


class NotFound(BridgeError):
    status = 404
    code = "not_found"


class StoreUnavailable(BridgeError):
    status = 503
    code = "store_unavailable"
