"""The real URLs plus `/api/v1/_bench/bare`: a DRF view with the project's default authentication,
permission and throttle classes and no work of its own — the floor the API benchmark compares with — and
`/_bench/django`, a plain Django view (no DRF, no authentication): the floor of the server and middleware."""

from django.http import JsonResponse
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ANY_MEMBER
from config.urls import handler400, handler403, handler404, handler500  # noqa: F401  (used by Django)
from config.urls import urlpatterns as real_urlpatterns


class BareView(APIView):
    access = {"get": ANY_MEMBER, "post": ANY_MEMBER}

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        return Response({"ok": True, "keys": sorted(request.data)}, status=202)


def bare_django(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("_bench/django", bare_django),
    path("api/v1/_bench/bare", BareView.as_view()),
    path("", include(real_urlpatterns)),
]
