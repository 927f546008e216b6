"""The organisation-scoped viewset every API resource is built on, so each endpoint has the same shape
(NetBox's lesson): the base does the HTTP part once — parse the body strictly, look the object up
before reading the body (another organisation's object is a 404, never a 400 or a 403), paginate,
render, answer 201/204, honour Idempotency-Key on creation — and a resource declares the rest:

    class TemplateViewSet(ListMixin, RetrieveMixin, DestroyMixin, OrganizationViewSet):
        resource = Resource(
            "template",                                   # the services' keyword; get's is template_id
            list=selectors.template_list,                 # org-scoped selectors
            get=selectors.template_get,                   # raises template_not_found
            destroy=services.template_delete,             # one service per write
        )
        serializer_class = TemplateSerializer             # what responses show
        results_key = "templates"
        access = {"list": WORKFLOWS_READ, ...}

A resource whose selectors and services follow the house names is `Resource.named("project", selectors,
services)` (projects_of, project_get, project_create, project_update, project_delete).

A resource takes only the mixins of the verbs it has (the router routes only those), and overrides a
hook (`get_object`, `perform_update`, …) where its selector or service is called differently. Custom
verbs are `@action`s that call one service."""

from collections.abc import Callable
from dataclasses import dataclass

from rest_framework import status, viewsets
from rest_framework.response import Response

from config.api.idempotency import idempotent
from config.api.serializers import validated


@dataclass(frozen=True)
class Resource:
    """A resource's selectors and services, called with keywords named after it: `list(organization=)`,
    `get(organization=, <lookup>=)`, `create(organization=, actor=, **data)`, `update(<name>=, actor=,
    **data)`, `destroy(<name>=, actor=)`."""

    name: str
    list: Callable | None = None
    get: Callable | None = None
    create: Callable | None = None
    update: Callable | None = None
    destroy: Callable | None = None
    lookup: str = ""  # the get selector's keyword (default: the view's lookup_field, else `<name>_id`)

    @classmethod
    def named(cls, name: str, selectors, services, *, prefix: str = "") -> "Resource":
        """A resource whose selectors and services carry the house names: `<prefix>s_of`, `<prefix>_get`
        in `selectors`, `<prefix>_create`, `<prefix>_update`, `<prefix>_delete` in `services` (`prefix`
        defaults to `name`). A missing one fails at import, not at the first request."""
        prefix = prefix or name
        return cls(
            name,
            list=getattr(selectors, f"{prefix}s_of"),
            get=getattr(selectors, f"{prefix}_get"),
            create=getattr(services, f"{prefix}_create"),
            update=getattr(services, f"{prefix}_update"),
            destroy=getattr(services, f"{prefix}_delete"),
        )


class OrganizationViewSet(viewsets.GenericViewSet):
    lookup_value_regex = r"[^/]+"
    results_key = "results"
    resource: Resource | None = None
    # Input serializer of each action that reads a body (e.g. "create", "partial_update").
    input_serializers: dict = {}

    @property
    def organization(self):
        """The caller's organisation: every read and write of the request is scoped to it."""
        return self.request.auth.organization

    @property
    def actor(self):
        """Who acts, for the services' audit records: the request's principal."""
        return self.request.auth

    def get_queryset(self):
        return self.resource.list(organization=self.organization)

    def get_object(self):
        default = self.lookup_field if self.lookup_field != "pk" else f"{self.resource.name}_id"
        ident = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        lookup = self.resource.lookup or default
        return self.resource.get(organization=self.organization, **{lookup: ident})

    def validated_input(self, serializer_class=None, data=None, **kwargs) -> dict:
        """The request body (or `data`, e.g. the query parameters) read by `serializer_class` (default:
        this action's input serializer)."""
        serializer_class = serializer_class or self.input_serializers[self.action]
        return validated(serializer_class, self.request.data if data is None else data, **kwargs)

    def render(self, instance, *, many: bool = False):
        """The response body of one object (or a page) by the action's output serializer."""
        return self.get_serializer_class()(instance, many=many).data

    def perform_create(self, data: dict):
        return self.resource.create(organization=self.organization, actor=self.actor, **data)

    def perform_update(self, instance, data: dict):
        return self.resource.update(**{self.resource.name: instance}, actor=self.actor, **data)

    def perform_destroy(self, instance) -> None:
        self.resource.destroy(**{self.resource.name: instance}, actor=self.actor)


class ListMixin:
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.render(page, many=True))


class RetrieveMixin:
    def retrieve(self, request, *args, **kwargs):
        return Response(self.render(self.get_object()))


class CreateMixin:
    @idempotent
    def create(self, request, *args, **kwargs):
        instance = self.perform_create(self.validated_input())
        return Response(self.render(instance), status=status.HTTP_201_CREATED)


# Class docstrings here would become every endpoint's OpenAPI description (drf-spectacular reads the
# view's MRO): the mixins and the base say what they do in comments.


class UpdateMixin:
    # PATCH: fields left out keep their values.
    def partial_update(self, request, *args, **kwargs):
        instance = self.get_object()  # 404 before 400
        instance = self.perform_update(instance, self.validated_input())
        return Response(self.render(instance))


class DestroyMixin:
    def destroy(self, request, *args, **kwargs):
        self.perform_destroy(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganizationModelViewSet(
    ListMixin, RetrieveMixin, CreateMixin, UpdateMixin, DestroyMixin, OrganizationViewSet
):
    pass  # every verb: list, retrieve, create, partial_update, destroy
