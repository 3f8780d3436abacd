"""What the client is told when a request or a stream fails: :class:`ApiError` and its JSON body,
``{"error": {"status": 413, "code": "too_large", "message": "..."}}`` (the codes are listed in
:mod:`asr.serve.app`)."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An error the client is told about: its HTTP status, a short code and a sentence."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(exc: ApiError) -> JSONResponse:
    body = {"error": {"status": exc.status, "code": exc.code, "message": exc.message}}
    return JSONResponse(body, exc.status, headers=exc.headers)
