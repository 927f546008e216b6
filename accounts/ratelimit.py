from rest_framework.throttling import BaseThrottle


class OrganizationRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        return True
