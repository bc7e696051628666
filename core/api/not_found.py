from django.urls import Resolver404, resolve
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, authentication_classes, permission_classes

from core.errors import NotFound

API_PREFIX = "/api/v1/"


class TrailingSlash(NotFound):
    code = "trailing-slash"
    title = "Drop the trailing slash"


class MissingSlash(NotFound):
    code = "missing-trailing-slash"
    title = "Add the trailing slash"


def _is_api_path(path: str) -> bool:
    try:
        return resolve(path).func is not api_not_found
    except Resolver404:
        return False


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([])
def api_not_found(request, path=""):
    """Any other /api/v1 path: a problem-details 404, not an HTML page. API paths have no trailing
    slash (only schema/ and docs/ do): a path that exists with or without one says so."""
    if path.endswith("/") and _is_api_path(API_PREFIX + path.rstrip("/")):
        location = API_PREFIX + path.rstrip("/")
        raise TrailingSlash(
            f"API paths have no trailing slash: use {location}.", extra={"location": location}
        )
    if path and not path.endswith("/") and _is_api_path(API_PREFIX + path + "/"):
        location = API_PREFIX + path + "/"
        raise MissingSlash(f"This path ends with a slash: use {location}.", extra={"location": location})
    raise NotFound("No such resource.")
