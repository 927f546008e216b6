"""Dashboard page of the audit app: the log with filters, keyset pages and a Verify button.

The access rule (a signed-in admin of the organisation) is applied where the URL is wired
(config/dashboard_urls.py), since the audit app sits below accounts; the view reads the organisation from
`request.principal`."""

from datetime import UTC, datetime, time

from django import forms
from django.shortcuts import render
from django.views.decorators.http import require_POST

from audit.chain import event_body, link_matches
from audit.checkpoints import public_keys, signature_holds
from audit.selectors import (
    LogFilters,
    audit_chain_verify,
    audit_events,
    audit_last_checkpoint,
    audit_log_page,
)
from audit.services import event_as_dict
from config.errors import not_found

PAGE_SIZE = 50


class AuditFilterForm(forms.Form):
    event = forms.CharField(
        required=False, max_length=64, help_text='Exact, or a prefix such as "api_key.*".'
    )
    actor = forms.CharField(required=False, max_length=64, help_text="A user or key id.")
    target = forms.CharField(required=False, max_length=64, help_text="The target's id.")
    since = forms.DateField(
        required=False, label="From (UTC date)", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="Before (UTC date)", widget=forms.DateInput(attrs={"type": "date"})
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def filters(self) -> LogFilters:
        data = self.cleaned_data

        def midnight(day):
            return datetime.combine(day, time.min, tzinfo=UTC) if day else None

        return LogFilters(
            since=midnight(data.get("since")),
            until=midnight(data.get("until")),
            actor=data.get("actor") or None,
            event=data.get("event") or None,
            target=data.get("target") or None,
        )


def audit_log(request):
    """Newest first, 50 a page (`before` = the sequence number to continue below)."""
    form = AuditFilterForm(request.GET or None)
    valid = form.is_bound and form.is_valid()
    filters = form.filters() if valid else LogFilters()
    before = form.cleaned_data.get("before") if valid else None
    events = audit_log_page(
        organization=request.principal.organization, filters=filters, before_seq=before, limit=PAGE_SIZE
    )
    query = request.GET.copy()
    more = len(events) > PAGE_SIZE
    events = events[:PAGE_SIZE]
    if more:
        query["before"] = events[-1].seq
    checkpoint = audit_last_checkpoint(organization=request.principal.organization)
    context = {
        "nav_active": "audit",
        "checkpoint": checkpoint,
        # True/False: the signature holds under the published key it names; None: that key is not published.
        "checkpoint_signed": signature_holds(checkpoint, public_keys()) if checkpoint else None,
        "checkpoint_signed_at": datetime.fromisoformat(checkpoint["signed_at"]) if checkpoint else None,
        "form": form,
        "events": events,
        "next_query": query.urlencode() if more else "",
        "filtered": valid and any(v for k, v in request.GET.items() if k != "before"),
    }
    return render(request, "audit/log.html", context)


@require_POST
def audit_verify(request):
    """Walk the organisation's chain and show the result (events checked, head hash, first break)."""
    result = audit_chain_verify(organization=request.principal.organization)
    template = "audit/_verify.html" if request.headers.get("HX-Request") else "audit/verify.html"
    return render(request, template, {"result": result, "nav_active": "audit"})


def audit_event(request, event_id: str):
    """One event in full (the export's shape), whether its hash matches its content and the previous
    hash it names, and links to its neighbours in the chain. Another organisation's event is a 404."""
    organization = request.principal.organization
    event = audit_events(organization=organization).filter(pk=event_id).first()
    if event is None:
        raise not_found("event", event_id)
    document = event_as_dict(event)
    neighbours = dict(
        audit_events(organization=organization)
        .filter(seq__in=[event.seq - 1, event.seq + 1])
        .values_list("seq", "id")
    )
    context = {
        "nav_active": "audit",
        "event": event,
        "document": document,
        "link_holds": link_matches(event.prev_hash, event_body(document), event.hash),
        "previous_id": neighbours.get(event.seq - 1),
        "next_id": neighbours.get(event.seq + 1),
    }
    return render(request, "audit/event.html", context)
