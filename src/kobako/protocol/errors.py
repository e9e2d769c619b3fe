"""The one exception type every layer raises for an AWS-shaped error.

Handlers, the auth layer and the parsers raise `AwsError`; the protocol serializer
turns it into the error body the client's protocol expects (S3's `<Error>` XML,
JSON `__type`, query `<ErrorResponse>`), so no layer formats errors itself.
"""

from __future__ import annotations

from collections.abc import Mapping


class AwsError(Exception):
    """An error with AWS's code, HTTP status and message.

    `fields` are extra elements some services put beside Code and Message (S3's
    `Key`, `BucketName`, `Resource`...). `headers` are added to the error response.
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        status: int = 400,
        *,
        sender_fault: bool = True,
        fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.sender_fault = sender_fault
        self.fields: dict[str, str] = dict(fields or {})
        self.headers: dict[str, str] = dict(headers or {})


def not_implemented(service: str, operation: str) -> AwsError:
    """The answer for a modelled operation that kobako does not serve yet."""
    return AwsError(
        "NotImplemented",
        f"The operation {operation} of service {service} is not implemented by kobako yet.",
        501,
        sender_fault=False,
    )
