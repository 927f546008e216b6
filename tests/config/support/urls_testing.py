"""Test-only URLs: the real ones plus views that fail in every way an endpoint can, and a creating
endpoint for the idempotency tests. Mounted with @pytest.mark.urls("tests.config.support.urls_testing")."""

from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ADMIN, ANY_MEMBER, WORKFLOWS_WRITE
from config import sql
from config.api.idempotency import idempotent
from config.api.permissions import PUBLIC
from config.errors import Conflict
from config.urls import handler400, handler403, handler404, handler500  # noqa: F401  (used by Django)
from config.urls import urlpatterns as real_urlpatterns
from workflows.models import Project


class EchoSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=20)


class EchoView(APIView):
    """Public: parses and validates the body (400, 413, 415 come from here)."""

    access = {"post": PUBLIC, "get": PUBLIC}
    serializer_class = EchoSerializer
    parser_classes = [JSONParser, MultiPartParser]  # its 413 rows send a form, as an upload would

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        serializer = EchoSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(serializer.validated_data)


class PublicCreateView(APIView):
    """@idempotent on an endpoint without an organisation: the key cannot be scoped and is ignored."""

    access = {"post": PUBLIC}
    serializer_class = EchoSerializer

    @idempotent
    def post(self, request):
        return Response({"created": True}, status=201)


class WhoAmIView(APIView):
    access = {"get": ANY_MEMBER}

    def get(self, request):
        return Response({"organization": request.auth.organization.pk})


class AdminOnlyView(APIView):
    access = {"get": ADMIN}

    def get(self, request):
        return Response({"ok": True})


class BoomView(APIView):
    access = {"get": PUBLIC}

    def get(self, request):
        raise RuntimeError("secret internals: do not leak")


class ConflictView(APIView):
    access = {"post": PUBLIC}

    def post(self, request):
        raise Conflict("run_not_cancellable", "The run is already finished.")


def django_boom(request):
    raise RuntimeError("secret internals: do not leak")


@require_POST
def post_only(request):
    return JsonResponse({"ok": True})


def bare_error(request):
    return HttpResponse("<html><body>teapot trouble</body></html>", status=409, content_type="text/html")


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class ProjectOutSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class ProjectCreateView(APIView):
    """A creating endpoint: makes a Project straight through the ORM (no other helper's code)."""

    access = {"post": WORKFLOWS_WRITE}

    @extend_schema(request=ProjectCreateSerializer, responses={201: ProjectOutSerializer})
    @idempotent
    def post(self, request):
        serializer = ProjectCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        name = serializer.validated_data["name"]
        if name == "fail-with-500":
            raise RuntimeError("handler crashed")
        if name == "refuse":
            return Response({"error": {"code": "conflict", "message": "Refused."}}, status=409)
        crash = request.headers.get("X-Test-Crash")
        if crash == "after-committing-pipeline":  # written as the engine's last save (`work.save(last=True)`)
            with sql.pipeline(commit=True):
                project = Project.objects.create(organization=request.auth.organization, name=name)
        else:
            project = Project.objects.create(organization=request.auth.organization, name=name)
        if crash in ("after-create", "after-committing-pipeline"):  # dies after its write, before its answer
            raise RuntimeError("crashed after creating")
        return Response({"id": project.pk, "name": project.name}, status=201)


urlpatterns = [
    path("api/v1/_test/echo", EchoView.as_view()),
    path("api/v1/_test/whoami", WhoAmIView.as_view()),
    path("api/v1/_test/public-create", PublicCreateView.as_view()),
    path("api/v1/_test/admin-only", AdminOnlyView.as_view()),
    path("api/v1/_test/boom", BoomView.as_view()),
    path("api/v1/_test/conflict", ConflictView.as_view()),
    path("api/v1/_test/django-boom", django_boom),
    path("api/v1/_test/post-only", post_only),
    path("api/v1/_test/bare-error", bare_error),
    path("api/v1/_test/projects", ProjectCreateView.as_view()),
    path("api/v1/_test/projects-elsewhere", ProjectCreateView.as_view()),
    path("", include(real_urlpatterns)),
]
