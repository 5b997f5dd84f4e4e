"""Property-based tests of the partner API against its own OpenAPI document
(issue 8, "Hostile input").

Schemathesis reads the document the app serves at /api/v1/schema/, generates
requests for every operation (valid ones and broken ones), sends them to the
Django WSGI app with a valid partner key, and checks what a partner would
notice: never a 5xx, only documented status codes, and bodies and content
types as documented.

The partner owns real objects for the generated paths to hit now and then:
a project of each delivery kind (sync and async) and of each content field
(media, text, url), a decided submission with a result, and a webhook endpoint
with a delivery in its log.

Bounded and deterministic: a fixed number of examples per operation, and
hypothesis derandomized, so a run is the same on every machine.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from moderation.models import Partner, Result, Status, Submission, WebhookDelivery
from moderation.services import notify, webhooks
from moderation.services.keys import issue_key

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
EXAMPLES = 50

SUBMISSION_ID = uuid.UUID("5b0d7e36-2c52-4f0e-9a55-0f4d5c1e7a01")
# The partner's objects, for the path parameters; filled by the `world` fixture.
KNOWN: dict[str, object] = {}

# The document as served: no key needed, no database touched.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", WSGIHandler())


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Each path parameter is either what was generated (almost always a 404)
    or one of the partner's own objects, so the success paths are fuzzed too."""
    if not path_parameters:
        return st.just(path_parameters)
    path = context.operation.path
    choices = {}
    for name, generated in path_parameters.items():
        if name == "slug":
            known = KNOWN["slugs"]
        elif name == "id":
            known = [KNOWN["submission"] if path.startswith("/api/v1/submissions/") else KNOWN["endpoint"]]
        elif name == "delivery_id":
            known = [KNOWN["delivery"]]
        else:
            known = []
        choices[name] = st.sampled_from([generated, *known])
    return st.fixed_dictionaries(choices)


SUBMIT = "POST /api/v1/projects/{slug}/submissions/"


@schema.hook
def flatmap_case(context, case):
    """Generated submission bodies almost never hold exactly the one content
    field a project takes, so some of them are replaced by a valid body for one
    of the partner's projects (generated text, URL, metadata and external_id,
    a real image or audio file): the 202 path is fuzzed as well as the refusals."""
    if context.operation.label != SUBMIT:
        return st.just(case)
    metadata = st.dictionaries(st.text(max_size=10), st.one_of(st.none(), st.booleans(), st.integers(),
                                                                st.text(max_size=20)), max_size=3)
    common = st.fixed_dictionaries({}, optional={"metadata": metadata, "external_id": st.text(max_size=255)})
    text = st.text(min_size=1, max_size=50).filter(str.strip)
    bodies = st.one_of(
        st.tuples(st.just("chat"), st.just("application/json"),
                  st.fixed_dictionaries({"text_data": text})),
        st.tuples(st.just("pics"), st.just("application/json"),
                  st.fixed_dictionaries({"url": st.from_regex(r"\Ahttps://cdn\.example\.com/[a-z0-9]{1,20}\.jpg\Z")})),
        st.tuples(st.just("pics"), st.just("multipart/form-data"),
                  st.fixed_dictionaries({"media": st.just(KNOWN["image"])})),
        st.tuples(st.just("calls"), st.just("multipart/form-data"),
                  st.fixed_dictionaries({"media": st.just(KNOWN["audio"])})),
    )

    def valid(drawn) -> object:
        (slug, media_type, content), extra = drawn
        if media_type == "multipart/form-data" and "metadata" in extra:
            extra = {**extra, "metadata": json.dumps(extra["metadata"])}  # a JSON string in multipart
        case.path_parameters = {**case.path_parameters, "slug": slug}
        case.media_type = media_type
        case.body = {**content, **extra}
        return case

    return st.one_of(st.just(case), st.tuples(bodies, common).map(valid))


@pytest.fixture(autouse=True)
def one_connection_per_test():
    """Run the WSGI app on the test's own database connection, as Django's test
    client does: without this, request_finished closes the connection, and the
    test's transaction with it."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, make_project, receiver, settings, tmp_path, media_samples):
    settings.MEDIA_ROOT = str(tmp_path)  # accepted uploads land here, not in the shared test media dir
    cache.clear()  # throttle counters of earlier tests
    partner = Partner.objects.create(name="fuzz")
    pics = make_project("pics", endpoint_type="visual", delivery="sync")
    chat = make_project("chat", endpoint_type="text", delivery="async", hive_api_key="sim-text-x")
    calls = make_project("calls", endpoint_type="speech", delivery="async", hive_api_key="sim-speech-x")
    partner.projects.add(pics, chat, calls)
    assert {p.delivery for p in (pics, chat, calls)} == {"sync", "async"}

    submission = Submission.objects.create(
        id=SUBMISSION_ID, project=pics, partner=partner, source="url", url="https://cdn.example.com/a.jpg",
        external_id="ext-1", metadata={"user": 7}, status=Status.COMPLETED, decision="approved",
        scores={"general_nsfw": 0.01}, top_class="general_nsfw", top_score=0.01,
    )
    Result.objects.create(submission=submission, source="sync", fingerprint="f" * 64, raw="{}",
                          scores={"general_nsfw": 0.01}, top_class="general_nsfw", top_score=0.01)

    endpoint = webhooks.create_endpoint(partner, receiver.url, ["submission.decided"])
    receiver.secrets.append(endpoint.secret)
    webhooks.fan_out(submission.pk, notify.DECIDED, "2026-11-29T10:00:00Z")
    delivery = WebhookDelivery.objects.get(message__endpoint=endpoint)

    KNOWN.update(slugs=["pics", "chat", "calls"], submission=str(submission.pk), endpoint=str(endpoint.pk),
                 delivery=delivery.pk, image=(media_samples / "sample.png").read_bytes(),
                 audio=(media_samples / "sample.mp3").read_bytes())
    yield issue_key(partner).plaintext
    KNOWN.clear()


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_the_api_answers_as_documented_and_never_5xx(case, world):
    case.call_and_validate(headers={"Authorization": f"Token {world}"}, checks=CHECKS)


ACCEPTED = {  # one accepted submission of each kind, with every optional field
    "text as JSON": ("chat", "application/json", lambda: {"text_data": "hello", "metadata": {"room": "a"},
                                                          "external_id": "t-1"}),
    "url as JSON": ("pics", "application/json", lambda: {"url": "https://cdn.example.com/a.jpg",
                                                         "metadata": {"n": [1, 2]}, "external_id": "u-1"}),
    "image as multipart": ("pics", "multipart/form-data", lambda: {
        "media": KNOWN["image"], "metadata": json.dumps({"user": 7}), "external_id": "i-1"}),
    "audio as multipart, async project": ("calls", "multipart/form-data", lambda: {
        "media": KNOWN["audio"], "external_id": "a-1"}),
}


@pytest.mark.parametrize("slug, media_type, body", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_an_accepted_submission_answers_202_as_documented(world, slug, media_type, body):
    """The fuzzed cases reach the 202 only now and then: each kind of accepted
    submission once, through the same document and checks."""
    case = schema["/api/v1/projects/{slug}/submissions/"]["POST"].Case(
        path_parameters={"slug": slug}, media_type=media_type, body=body())
    response = case.call_and_validate(headers={"Authorization": f"Token {world}"}, checks=CHECKS)
    assert response.status_code == 202, response.text
    created = Submission.objects.get(pk=response.json()["id"])
    assert (created.project.slug, created.status) == (slug, Status.QUEUED)


def test_every_partner_route_is_in_the_document(db):
    """What the document leaves out is never fuzzed: every route under
    /api/v1/ but the document and its page must be in it."""
    from moderation.api import urls

    documented = set(schema.raw_schema["paths"])
    routes = {"/api/v1/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + ("id" if m[1] == "pk" else m[1]) + "}",
                                  str(p.pattern)) for p in urls.urlpatterns}
    assert routes - documented == {"/api/v1/schema/", "/api/v1/docs/"}


def test_the_document_lists_every_field_a_response_always_has_and_the_decisions(db):
    """A generated client makes a field optional unless the document says it is
    always there, and types `decision` as any string unless it lists the values."""
    from moderation.models import Decision

    components = schema.raw_schema["components"]["schemas"]
    for name in ("Project", "Result", "Submission"):
        component = components[name]
        assert set(component["properties"]) == set(component["required"]), name
    decision = components["Submission"]["properties"]["decision"]
    enums = [components[ref["$ref"].rsplit("/", 1)[1]] for ref in decision["oneOf"]]
    assert set(enums[0]["enum"]) == set(Decision.values) and decision["nullable"]
