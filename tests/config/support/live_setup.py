"""Run inside the race tests' server environment (its database and peppers):
`python -m tests.config.support.live_setup create [RATE_PER_MINUTE]` prints {"organization", "key"};
`python -m tests.config.support.live_setup count ORG_ID` prints the organisation's number of projects."""

import json
import sys

import django


def main(argv):
    django.setup()
    from accounts.models import User
    from tests.conftest import key_for
    from tests.factories import make_org
    from workflows.models import Project

    if argv[0] == "create":
        owner = User.objects.create_user(email=f"racer-{User.objects.count()}@example.com", password="x" * 12)
        org = make_org(name=f"Racers {owner.pk}", plan="starter", owner=owner)
        org.rate_per_minute = int(argv[1]) if len(argv) > 1 else None
        org.rate_per_day = None
        org.save()
        print(json.dumps({"organization": org.pk, "key": key_for(org, owner)}))
    elif argv[0] == "count":
        print(Project.objects.filter(organization_id=argv[1]).count())


if __name__ == "__main__":
    main(sys.argv[1:])
