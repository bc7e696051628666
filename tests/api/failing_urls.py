"""The project's URLs plus a view that fails, to see what a server error answers (test-only)."""

from django.urls import path

from config import urls as project


def failing(request):
    raise RuntimeError("secret detail that must not reach the client")


urlpatterns = [path("api/v1/failing", failing), path("failing", failing), *project.urlpatterns]

handler400 = project.handler400
handler403 = project.handler403
handler404 = project.handler404
handler500 = project.handler500
