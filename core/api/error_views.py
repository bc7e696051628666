"""Django's own error pages (handler400/403/404/500), as problem JSON on API paths.

Errors DRF never sees (a body over DATA_UPLOAD_MAX_MEMORY_SIZE read outside a view, an exception
escaping a view with DEBUG off) are answered by these handlers. The admin and other pages keep
Django's HTML pages.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.views import defaults
from rest_framework.renderers import JSONRenderer

from core.api.problems import PROBLEM_CONTENT_TYPE, problem, too_large_problem

API_PREFIX = "/api/"


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def _rendered(response=None, **problem_fields):
    if response is None:
        response = problem(**problem_fields)
    response.accepted_renderer = JSONRenderer()
    response.accepted_media_type = PROBLEM_CONTENT_TYPE
    response.renderer_context = {}
    return response.render()


def bad_request(request, exception, template_name="400.html"):
    if not _is_api(request):
        return defaults.bad_request(request, exception, template_name)
    if isinstance(exception, RequestDataTooBig):
        return _rendered(too_large_problem())
    return _rendered(
        status_code=400,
        code="bad-request",
        title="Bad request",
        detail="The request could not be understood.",
    )


def permission_denied(request, exception, template_name="403.html"):
    if not _is_api(request):
        return defaults.permission_denied(request, exception, template_name)
    return _rendered(
        status_code=403, code="permission-denied", title="Permission denied", detail="Permission denied."
    )


def page_not_found(request, exception, template_name="404.html"):
    if not _is_api(request):
        return defaults.page_not_found(request, exception, template_name)
    return _rendered(status_code=404, code="not-found", title="Not found", detail="No such resource.")


def server_error(request, template_name="500.html"):
    if not _is_api(request):
        return defaults.server_error(request, template_name)
    # Nothing about the failure goes to the client; the log has the traceback and the request id.
    return _rendered(
        status_code=500,
        code="internal-error",
        title="Internal server error",
        detail="The server failed to answer this request. It has been logged; quote the X-Request-Id.",
    )
