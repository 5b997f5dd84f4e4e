"""Portal pages. Thin: each view checks access, calls a service, renders."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import Http404, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from moderation.models import Decision, Submission
from moderation.portal import present
from moderation.portal.access import forbidden, lead_required, reviewer_required
from moderation.portal.forms import DecisionForm, PreferenceForm, QueueFilterForm
from moderation.services import review
from moderation.services.review import LEAD_GROUP, QUEUES

HISTORY_LIMIT = 200
FILTER_NAMES = tuple(QueueFilterForm.base_fields)


def _filter_params(data) -> dict[str, str]:
    return {name: data[name] for name in FILTER_NAMES if data.get(name)}


def _list_query(queue: str, data=None) -> str:
    """The query string that opens an item inside its list: the queue it came
    from and the filters that list had. Carried from page to page, so prev/next,
    Skip and "Submit and next" stay within what the moderator chose to work on."""
    params = {"queue": queue} if queue in QUEUES else {}
    if queue in QUEUES and queue != "search" and data is not None:
        params.update(_filter_params(data))
    return urlencode(params)


def _item_url(submission, query: str = "") -> str:
    url = reverse("portal:item", args=[submission.pk])
    return f"{url}?{query}" if query else url


def _list_url(queue: str, data=None) -> str:
    url = reverse("portal:queue", args=[queue])
    query = urlencode(_filter_params(data)) if data is not None else ""
    return f"{url}?{query}" if query else url


def _filters(request, data) -> review.QueueFilters:
    if not _filter_params(data):
        return review.QueueFilters()  # no form, so no query for the project choices
    return QueueFilterForm(data, projects=review.reviewable_projects(request.user)).filters()


def _default_queue(submission: Submission) -> str:
    return {Decision.PENDING: "review", Decision.ESCALATED: "escalated"}.get(submission.decision, "search")


def _get_item(request, pk) -> Submission:
    submission = review.get_visible(request.user, pk)
    if submission is None:
        raise Http404("No such item in your projects.")
    return submission


# --- Queues -------------------------------------------------------------------


@require_GET
@reviewer_required
def home(request):
    return redirect("portal:queue", name="review")


@require_GET
@reviewer_required
def queue(request, name: str):
    spec = QUEUES.get(name)
    if spec is None or name == "search":
        raise Http404("No such queue.")
    if spec.leads_only and request.portal_role != LEAD_GROUP:
        return forbidden(request, f"The {spec.title} queue is for leads.")
    return _queue_page(request, name)


@require_GET
@reviewer_required
def search(request):
    form = QueueFilterForm(request.GET, projects=review.reviewable_projects(request.user))
    filters = form.filters()
    if filters.q:
        found = list(review.queue_queryset(request.user, "search", filters)[:2])
        if len(found) == 1:
            return redirect(_item_url(found[0], _list_query(_default_queue(found[0]))))
    return _queue_page(request, "search", form)


def _queue_page(request, name: str, form: QueueFilterForm | None = None):
    form = form or QueueFilterForm(request.GET or None, projects=review.reviewable_projects(request.user))
    filters = form.filters() if form.is_bound else review.QueueFilters()
    try:
        page_number = int(request.GET.get("page", 1))
    except ValueError:
        page_number = 1
    page = review.queue_page(request.user, name, filters, page=page_number)
    now = timezone.now()
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "portal/queue.html", {
        "queue": page.spec, "page": page, "form": form, "query": query.urlencode(),
        "rows": [(item, review.sla_state(item, now), _holder(item, now),
                  present.age(item.decided_at if name == "decided" else item.created_at, now))
                 for item in page.items],
        "item_query": _list_query(name, request.GET), "tab": name,
    })


def _holder(item: Submission, now) -> str:
    """Who holds a live claim on an open item, for the list's "who" column."""
    live = item.claimed_by_id and item.claimed_until and item.claimed_until >= now
    open_ = item.decision in (Decision.PENDING, Decision.ESCALATED)
    return str(item.claimed_by) if live and open_ else ""


@require_POST
@reviewer_required
def start(request):
    """"Start reviewing": claim the oldest free item of the list it was pressed
    on (the form carries that list's filters) and open it."""
    queue_name = "escalated" if request.POST.get("queue") == "escalated" else "review"
    item = review.claim_next(request.user, filters=_filters(request, request.POST),
                             escalated=queue_name == "escalated")
    if item is None:
        messages.info(request, "Nothing left to review here. Thank you.")
        return redirect(_list_url(queue_name, request.POST))
    return redirect(_item_url(item, _list_query(queue_name, request.POST)))


# --- The review screen ----------------------------------------------------------


@require_GET
@reviewer_required
def item(request, pk):
    submission = _get_item(request, pk)
    return render(request, "portal/item.html", _item_context(request, submission))


def _item_context(request, submission: Submission, form: DecisionForm | None = None) -> dict:
    user = request.user
    queue_name = request.GET.get("queue") or _default_queue(submission)
    queue_name = queue_name if queue_name in QUEUES else "search"
    list_query = _list_query(queue_name, request.GET)
    prefs = review.preferences(user)
    results = list(submission.results.all())
    model = results[0] if results else None
    is_lead = request.portal_role == LEAD_GROUP
    can_decide = submission.decision == Decision.PENDING or (submission.decision == Decision.ESCALATED and is_lead)
    others = review.heartbeat(user, submission.pk)
    prev, nxt = review.neighbours(user, queue_name, submission, _filters(request, request.GET))
    claim_live = bool(submission.claimed_by_id and submission.claimed_until
                      and submission.claimed_until >= timezone.now())
    held_by_other = claim_live and submission.claimed_by_id != user.pk
    text = submission.text_data
    strip = present.score_strip(model.timeline if model else None, submission.project.thresholds)
    try:
        start_at = float(request.GET.get("t", ""))
    except ValueError:
        start_at = None
    return {
        "item": submission, "project": submission.project, "queue_name": queue_name,
        "queue_spec": QUEUES[queue_name], "prefs": prefs, "list_query": list_query,
        "list_fields": list(QueryDict(list_query).items()),
        "back_url": (reverse("portal:search") + f"?q={submission.pk}" if queue_name == "search"
                     else _list_url(queue_name, request.GET)),
        "blurred": prefs.blur_enabled and (submission.top_score or 0) >= prefs.blur_threshold,
        "model": model, "results": results, "hive_review": present.hive_review(results),
        "scores": present.score_rows(submission.scores, submission.project.thresholds),
        "segments": present.highlight(text, model.text_matches if model else []) if text else [],
        "strip": strip, "start_at": start_at,
        "transcript": model.transcript if model else "",
        "events": [(event, present.event_summary(event.data)) for event in
                   submission.events.select_related("user").order_by("created_at", "id")[:HISTORY_LIMIT]],
        "others": others, "can_decide": can_decide, "is_lead": is_lead,
        "claim_live": claim_live, "held_by_other": held_by_other,
        "mine": claim_live and submission.claimed_by_id == user.pk,
        "seen": review.seen_token(submission), "reasons": review.reject_reasons(submission.project),
        "prev": prev, "next": nxt, "sla": review.sla_state(submission),
        "waited": present.age(submission.created_at),
        "decided_ago": present.age(submission.decided_at) if submission.decided_at else "",
        "form": form, "assignees": _assignees(submission) if is_lead and can_decide else [],
        "tab": queue_name,
    }


def _assignees(submission: Submission):
    """Leads, and the project's moderators unless it is escalated: only a lead
    may decide an escalation (review.assign refuses anyone else)."""
    who = Q(groups__name=LEAD_GROUP) | Q(is_superuser=True)
    if submission.decision != Decision.ESCALATED:
        who |= Q(review_projects=submission.project)
    return get_user_model().objects.filter(who, is_active=True).distinct().order_by("username")


@require_POST
@reviewer_required
def decide(request, pk):
    submission = _get_item(request, pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve, reject or escalate.")
        return render(request, "portal/item.html", _item_context(request, submission, form), status=400)
    data = form.cleaned_data
    try:
        decided = review.decide(request.user, submission, data["action"], seen=data["seen"],
                                reason=data["reason"], note=data["note"])
    except review.StaleDecision as error:
        messages.error(request, error.message)
        return redirect(_item_url(submission, _list_query(data["queue"], request.POST)))
    except review.NotAllowed as error:
        return forbidden(request, error.message)
    except review.ReviewError as error:
        messages.error(request, error.message)
        return render(request, "portal/item.html", _item_context(request, submission, form), status=400)
    review.leave(request.user, submission.pk)
    summary = decided.get_decision_display() + (f" ({decided.decision_reason})" if decided.decision_reason else "")
    messages.success(request, f"{summary}: {str(decided.pk)[:8]}.")
    if data["next"]:
        return _next_after(request, data["queue"])
    return redirect(_item_url(decided, _list_query(data["queue"], request.POST)))


def _next_after(request, queue_name: str):
    """The next item of the list the moderator was working: same queue, same filters."""
    queue_name = "escalated" if queue_name == "escalated" else "review"
    filters = _filters(request, request.POST)
    nxt = review.claim_next(request.user, filters=filters, escalated=queue_name == "escalated")
    if nxt is None:
        filtered = filters != review.QueueFilters()
        messages.info(request, "That was the last one matching your filters." if filtered
                      else "That was the last one. The queue is empty.")
        return redirect(_list_url(queue_name, request.POST))
    return redirect(_item_url(nxt, _list_query(queue_name, request.POST)))


@require_POST
@reviewer_required
def skip(request, pk):
    submission = _get_item(request, pk)
    review.skip(request.user, submission)
    review.leave(request.user, submission.pk)
    return _next_after(request, request.POST.get("queue", "review"))


@require_POST
@reviewer_required
def claim(request, pk):
    submission = _get_item(request, pk)
    if not review.claim(request.user, submission):
        messages.error(request, "Someone else holds this item, or it is already decided.")
    return redirect(_item_url(submission, _list_query(request.POST.get("queue", ""), request.POST)))


@require_POST
@reviewer_required
def release(request, pk):
    submission = _get_item(request, pk)
    if review.release(request.user, submission):
        messages.info(request, "Released: it is back in the queue.")
    return redirect(_item_url(submission, _list_query(request.POST.get("queue", ""), request.POST)))


@require_POST
@lead_required
def assign(request, pk):
    submission = _get_item(request, pk)
    moderator = get_user_model().objects.filter(pk=request.POST.get("user") or None).first()
    if moderator is None:
        messages.error(request, "Choose who should review it.")
    else:
        try:
            review.assign(request.user, submission, moderator)
            messages.success(request, f"Assigned to {moderator}.")
        except review.ReviewError as error:
            messages.error(request, error.message)
    return redirect(_item_url(submission, _list_query(request.POST.get("queue", ""), request.POST)))


@require_POST
@reviewer_required
def presence(request, pk):
    """Heartbeat from an open review screen: who else is here, and has the
    item changed under me (so the page can say so before I decide)."""
    submission = _get_item(request, pk)
    if request.POST.get("leave"):
        review.leave(request.user, submission.pk)
        return JsonResponse({"others": []})
    return JsonResponse({
        "others": review.heartbeat(request.user, submission.pk),
        "seen": review.seen_token(submission),
        "decision": submission.get_decision_display() if submission.decision else "",
        "decided_by": str(submission.decided_by or ""),
    })


# --- Grid -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@reviewer_required
def grid(request):
    projects = review.reviewable_projects(request.user)
    project = projects.filter(slug=request.GET.get("project") or request.POST.get("project") or "").first()
    if request.method == "POST":
        return _grid_decide(request, project)
    items = review.claim_batch(request.user, project_id=project.pk if project else None)
    prefs = review.preferences(request.user)
    reasons = sorted({r for i in items for r in review.reject_reasons(i.project)},
                     key=lambda r: (r.startswith("Other"), r))
    tiles = [(i, review.seen_token(i), prefs.blur_enabled and (i.top_score or 0) >= prefs.blur_threshold)
             for i in items]
    return render(request, "portal/grid.html", {
        "tiles": tiles, "prefs": prefs, "projects": projects, "project": project, "reasons": reasons,
        "tab": "grid",
    })


def _grid_decide(request, project):
    action = request.POST.get("action")
    back = reverse("portal:grid") + (f"?project={project.slug}" if project else "")
    if action == "release":
        return _grid_release(request, back)
    picked = request.POST.getlist("ids")
    items = []
    for pk in picked:
        submission = review.get_visible(request.user, pk)
        if submission is not None:
            items.append((submission, request.POST.get(f"seen-{pk}", "")))
    if not items:
        messages.error(request, "Select at least one image first.")
        return HttpResponseRedirect(back)
    if action not in (review.APPROVE, review.REJECT):
        messages.error(request, "Choose approve or reject.")
        return HttpResponseRedirect(back)
    outcome = review.bulk_decide(request.user, items, action, reason=request.POST.get("reason", ""))
    verb = "Approved" if action == review.APPROVE else "Rejected"
    if outcome.decided:
        messages.success(request, f"{verb} {len(outcome.decided)}.")
    for pk, why in outcome.refused[:5]:
        messages.error(request, f"{pk[:8]}: {why}")
    return HttpResponseRedirect(back)


def _grid_release(request, back: str):
    """Give back every image the grid held, so others can take them now."""
    released = 0
    for pk in request.POST.getlist("shown"):
        submission = review.get_visible(request.user, pk)
        if submission is not None and submission.claimed_by_id == request.user.pk:
            released += review.release(request.user, submission)
    messages.info(request, f"Released {released} image{'s' if released != 1 else ''} back to the queue.")
    return redirect("portal:queue", name="review")


# --- Dashboard and preferences --------------------------------------------------------


@require_GET
@lead_required
def dashboard(request):
    from moderation.portal import charts

    try:
        hours = min(max(int(request.GET.get("hours", 24)), 1), 24 * 14)
    except ValueError:
        hours = 24
    data = review.dashboard(hours=hours)
    return render(request, "portal/dashboard.html", {
        "d": data, "hours": hours, "tab": "dashboard",
        "hourly_svg": charts.hourly_bars(data.per_hour),
        "moderator_svg": charts.stacked_rows(data.per_moderator),
        "agreement_svg": charts.stacked_rows(data.agreement),
        "share_svg": charts.share_bar(data.automatic, data.human),
        "agreement_rows": [(cls, v, _agreement_hint(v)) for cls, v in data.agreement],
        "backlog": [(row, present.age(row.oldest) if row.oldest else "") for row in data.backlog],
    })


def _agreement_hint(values: dict[str, int]) -> str:
    total = sum(values.values())
    if total < 5:
        return "too few decisions to tell"
    rejected = values.get("rejected", 0) / total
    if rejected >= 0.8:
        return "moderators mostly reject: the reject threshold could be lower"
    if rejected <= 0.2:
        return "moderators mostly approve: the review threshold could be higher"
    return "a real grey zone: review is earning its keep"


@require_http_methods(["GET", "POST"])
@reviewer_required
def preferences(request):
    prefs = review.preferences(request.user)
    form = PreferenceForm(request.POST or None, instance=prefs)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Preferences saved.")
        target = request.POST.get("next", "")
        if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
            return redirect(target)
        return redirect("portal:preferences")
    return render(request, "portal/preferences.html", {"form": form, "tab": "preferences"},
                  status=400 if form.errors else 200)
