"""Inbound webhooks (API.md `/hooks`, docs/schedules.md "Inbound webhooks"): POST /hooks/{workflow_id}/{token}
and POST /hooks/{workflow_id} (signed). No API key: the token or the signature is the credential
(workflows/webhooks.py). The body is the run's input; the run carries `trigger: "webhook"` and the
allowlisted request headers in `metadata.webhook`."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import QueryDict
from rest_framework import status as http
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.principal import SystemActor
from config.api.exceptions import exception_handler
from config.api.permissions import PUBLIC
from config.errors import ApplicationError, Conflict, InvalidRequest, PayloadTooLarge, RateLimited
from runs import services
from runs.api import schema
from runs.choices import RunTrigger
from workflows import webhooks
from workflows.choices import WorkflowStatus
from workflows.models import WebhookDelivery


class UnsupportedMediaType(ApplicationError):
    status = 415
    default_code = "unsupported_media_type"


class _Duplicate(Exception):
    def __init__(self, key: str):
        self.key = key


def _read_body(request) -> bytes:
    limit = settings.BATON_WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge(
            message=f"The webhook body is over {limit} bytes.", details={"max_bytes": limit}
        )
    body = request.body
    if len(body) > limit:
        raise PayloadTooLarge(
            message=f"The webhook body is over {limit} bytes.", details={"max_bytes": limit}
        )
    return body


def _input(body: bytes, content_type: str) -> dict:
    """The run's input from a JSON or form-encoded body (an empty body is {}); GitHub's form deliveries
    carry their JSON in a `payload` field."""
    media = content_type.split(";")[0].strip().lower()
    if not body.strip():
        return {}
    if media == schema.HOOK_FORM:
        form = QueryDict(body, encoding="utf-8")
        data = {name: values[0] if len(values) == 1 else values for name, values in form.lists()}
        if set(data) == {"payload"} and isinstance(data["payload"], str):
            return _json_object(data["payload"].encode())
        return data
    if media in ("", "application/json") or media.endswith("+json"):
        return _json_object(body)
    raise UnsupportedMediaType(message="Send the body as application/json or form-encoded.")


def _json_object(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("invalid_request", "The webhook body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise InvalidRequest("invalid_request", "The webhook body must be a JSON object (the run's input).")
    return value


def _first_run(workflow, keys: list[str]) -> str | None:
    if not keys:
        return None
    return (
        WebhookDelivery.objects.filter(workflow=workflow, key__in=keys)
        .exclude(run_id="")
        .values_list("run_id", flat=True)
        .first()
    )


class HookView(APIView):
    """The handler of both hook forms (HookTokenView, HookSignedView)."""

    authentication_classes: list = []
    throttle_classes: list = []
    access = {"post": PUBLIC}

    def handle(self, request, workflow_id: str, token: str | None = None):
        workflow = webhooks.hook_workflow(workflow_id)
        if token is not None:
            webhooks.check_token(workflow, token)
        body = _read_body(request)
        try:
            rate_headers = webhooks.check_rate(workflow)
        except RateLimited as exc:
            response = exception_handler(exc, {"request": request, "view": self})
            for name, value in exc.headers.items():
                response[name] = value
            return response
        replay_key = None if token is not None else webhooks.check_signature(workflow, request.headers, body)
        if workflow.status == WorkflowStatus.PAUSED:
            raise Conflict(
                "workflow_disabled", f"Workflow {workflow.id} is paused: activate it to trigger runs."
            )
        keys = []
        if request.headers.get("Idempotency-Key"):
            keys.append("idem:" + request.headers["Idempotency-Key"][:255])
        if request.headers.get("X-GitHub-Delivery"):
            keys.append("gh:" + request.headers["X-GitHub-Delivery"][:255])
        first = _first_run(workflow, keys)
        if first is not None:
            return Response({"run_id": first}, status=http.HTTP_202_ACCEPTED, headers=rate_headers)
        if request.headers.get("X-GitHub-Event", "").lower() == "ping":
            return Response({"ok": True, "event": "ping"}, status=http.HTTP_200_OK, headers=rate_headers)
        input_data = _input(body, request.META.get("CONTENT_TYPE", ""))
        try:
            run_id = self._start(workflow, input_data, keys, replay_key, request.headers)
        except _Duplicate as duplicate:
            if duplicate.key == replay_key:
                raise Conflict(
                    "webhook_replayed", "This signature was used before: sign each delivery anew."
                ) from None
            run_id = _first_run(workflow, keys) or ""
        return Response({"run_id": run_id}, status=http.HTTP_202_ACCEPTED, headers=rate_headers)

    @staticmethod
    @transaction.atomic
    def _start(workflow, input_data: dict, keys: list[str], replay_key: str | None, headers) -> str:
        """Record the delivery's keys and start its run in one transaction: of two concurrent copies of one
        delivery, the second waits on the unique key and then answers with the first's run."""
        recorded = [*keys, *([replay_key] if replay_key else [])]
        for key in recorded:
            try:
                with transaction.atomic():
                    WebhookDelivery.objects.create(workflow=workflow, key=key[:300])
            except IntegrityError:
                raise _Duplicate(key) from None
        actor = SystemActor(organization=workflow.organization, actor_type="webhook", actor_id="webhook")
        run = services.run_trigger(
            workflow=workflow,
            actor=actor,
            version_spec="published" if workflow.published_version else "latest",
            input_data=input_data,
            metadata={"webhook": webhooks.webhook_metadata(headers)},
            trigger=RunTrigger.WEBHOOK,
        )
        if recorded:
            WebhookDelivery.objects.filter(workflow=workflow, key__in=[k[:300] for k in recorded]).update(
                run_id=run.id
            )
        return run.id


class HookTokenView(HookView):
    """POST /hooks/{workflow_id}/{token}."""

    @schema.hook_schema(
        summary="Start a run from an inbound webhook (token in the path)", operation_id="hooks_token_create"
    )
    def post(self, request, workflow_id: str, token: str):
        return self.handle(request, workflow_id, token)


class HookSignedView(HookView):
    """POST /hooks/{workflow_id} (X-Baton-Signature or X-Hub-Signature-256)."""

    @schema.hook_schema(
        summary="Start a run from an inbound webhook (signed)", operation_id="hooks_signed_create"
    )
    def post(self, request, workflow_id: str):
        return self.handle(request, workflow_id)
