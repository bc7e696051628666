from rest_framework.routers import SimpleRouter

from audit import apis

router = SimpleRouter(trailing_slash=False)
router.register("events", apis.EventViewSet, basename="event")

urlpatterns = router.urls
