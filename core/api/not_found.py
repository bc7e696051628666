from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import NotFound


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([])
def api_not_found(request, path=""):
    """Any other /api/v1 path: a problem-details 404, not an HTML page."""
    raise NotFound("No such resource.")
