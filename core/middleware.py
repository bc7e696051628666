import uuid

import structlog
from django.http import JsonResponse


class RejectNulBytesMiddleware:
    """A NUL byte in the path or query can never be stored by PostgreSQL: answer 400, not 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw = request.META.get("QUERY_STRING", "") + request.path
        if "\x00" in raw or "%00" in raw:
            return JsonResponse(
                {
                    "type": "/problems/validation-error",
                    "title": "Invalid input",
                    "status": 400,
                    "detail": "The URL contains a NUL character.",
                    "code": "validation-error",
                    "errors": [
                        {
                            "field": "url",
                            "message": "NUL characters are not allowed.",
                            "code": "null_characters_not_allowed",
                        }
                    ],
                },
                status=400,
                content_type="application/problem+json",
            )
        return self.get_response(request)


class RequestLogContextMiddleware:
    """Binds a request id to every log line of the request and echoes it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id[:64], path=request.path)
        response = self.get_response(request)
        response["X-Request-Id"] = request_id[:64]
        return response
