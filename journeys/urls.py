from django.urls import path

from journeys import apis

urlpatterns = [
    path("journeys", apis.JourneyListView.as_view(), name="journey-list"),
    path("journeys/<str:journey_id>", apis.JourneyStatusView.as_view(), name="journey-status"),
    path("journeys/<str:journey_id>/result", apis.JourneyResultView.as_view(), name="journey-result"),
    path("journeys/<str:journey_id>/steps/<str:step_id>", apis.JourneyStepView.as_view(), name="journey-step"),
]
