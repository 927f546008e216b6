"""The security policy, secrets and the webhook signing secret over HTTP (docs/security.md). All admin-only.

Secret values are write-only: no response, replay, audit event or log line carries one. The signing
secret is shown (receivers need it to verify deliveries) and never cached (`Cache-Control: no-store`)."""

from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.api import schema
from accounts.api import serializers as s
from accounts.permissions import ADMIN
from config.api.serializers import validated
from config.api.viewsets import OrganizationModelViewSet, Resource

NO_STORE = {"Cache-Control": "no-store"}


@schema.SECURITY_POLICY
class SecurityPolicyView(APIView):
    access = {"get": ADMIN, "put": ADMIN}

    def get(self, request):
        policy = services.security_policy_get(organization=request.auth.organization)
        return Response(s.SecurityPolicySerializer(s.policy_data(policy)).data)

    def put(self, request):
        changes = validated(s.SecurityPolicyUpdateSerializer, request.data)
        policy = services.security_policy_update(
            organization=request.auth.organization, actor=request.auth, changes=dict(changes)
        )
        return Response(s.SecurityPolicySerializer(s.policy_data(policy)).data)


@schema.SIGNING_SECRET
class SigningSecretView(APIView):
    access = {"get": ADMIN}

    def get(self, request):
        row = services.signing_secret_get(organization_id=request.auth.organization.id)
        return Response(s.SigningSecretSerializer(s.signing_secret_data(row)).data, headers=NO_STORE)


@schema.SIGNING_SECRET_ROTATE
class SigningSecretRotateView(APIView):
    access = {"post": ADMIN}

    def post(self, request):
        data = validated(s.SigningSecretRotateSerializer, request.data)  # no body: {}
        row = services.signing_secret_rotate(
            organization=request.auth.organization, actor=request.auth, grace_seconds=data["grace_seconds"]
        )
        return Response(s.SigningSecretSerializer(s.signing_secret_data(row)).data, headers=NO_STORE)


@schema.SECRETS
class SecretViewSet(OrganizationModelViewSet):
    resource = Resource.named("secret", selectors, services)
    serializer_class = s.SecretSerializer
    input_serializers = {"create": s.SecretCreateSerializer, "partial_update": s.SecretUpdateSerializer}
    results_key = "secrets"
    # Responses never hold the value; listed anyway so a future field cannot leak through a replay.
    idempotency_replay_omit = ("value",)
    access = {"list": ADMIN, "create": ADMIN, "retrieve": ADMIN, "partial_update": ADMIN, "destroy": ADMIN}
