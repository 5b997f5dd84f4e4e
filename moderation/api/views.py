"""Partner API views: thin; every queryset starts from the partner's own rows."""

from __future__ import annotations

import hashlib
import json

from django.core.files.uploadhandler import FileUploadHandler
from django.db import IntegrityError
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from moderation.api.exceptions import Conflict, PayloadTooLarge
from moderation.api.filters import SubmissionFilter
from moderation.api.pagination import TimestampCursorPagination
from moderation.api.parsers import SafeJSONParser
from moderation.api.schema import error
from moderation.api.serializers import (
    ProjectSerializer, SubmissionCreateSerializer, SubmissionSerializer, submission_json,
)
from moderation.models import Project, Result, Submission
from moderation.services import idempotency, intake

MAX_IDEMPOTENCY_KEY = 255


def partner_projects(partner):
    return Project.objects.filter(partners=partner, is_active=True)


def partner_submissions(partner):
    # Hive's raw result (megabytes for a long video) is not part of the API's body.
    results = Prefetch("results", queryset=Result.objects.order_by("received_at", "id").defer("raw"))
    return Submission.objects.filter(partner=partner).select_related("project").prefetch_related(results)


class ProjectList(generics.ListAPIView):
    serializer_class = ProjectSerializer
    pagination_class = None

    def get_queryset(self):
        return partner_projects(self.request.user).order_by("slug")


class SizeLimitHandler(FileUploadHandler):
    """Stops an upload as soon as its file passes MAX_UPLOAD_MB (the
    Content-Length check in `initial` allows the multipart envelope on top; a
    body without a Content-Length never gets here: hiveportal.middleware);
    and takes each file's sha256 as its bytes stream past, so nothing reads
    the file a second time to hash it (a 4 MB upload spooled to disk was read
    back whole)."""

    def __init__(self, limit: int, handlers: list):
        super().__init__()
        self.limit = limit
        self.seen = 0
        self.handlers = handlers
        self.sha256: dict = {}  # field name -> hashlib.sha256(); repeated fields are refused

    def new_file(self, field_name, *args, **kwargs):
        super().new_file(field_name, *args, **kwargs)
        self.sha256[field_name] = hashlib.sha256()

    def receive_data_chunk(self, raw_data, start):
        self.sha256[self.field_name].update(raw_data)
        self.seen += len(raw_data)
        if self.seen > self.limit:
            # Django closes only the files it finished; the one being written (a
            # temporary file on disk past FILE_UPLOAD_MAX_MEMORY_SIZE) would stay
            # until garbage collection.
            for handler in self.handlers:
                if getattr(handler, "file", None) is not None:
                    handler.file.close()
            raise PayloadTooLarge({"media": [f"The file is larger than the {self.limit // 2**20} MB limit."]})
        return raw_data

    def file_complete(self, file_size):
        return None


class SubmissionCreate(APIView):
    parser_classes = [MultiPartParser, FormParser, SafeJSONParser]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication and throttling first
        limit = intake.max_upload_bytes()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit + 64 * 1024:  # room for the multipart envelope
            raise PayloadTooLarge({"body": [f"The request is larger than the {limit // 2**20} MB limit."]})
        handlers = request.upload_handlers
        self.upload_check = SizeLimitHandler(limit, handlers)
        handlers.insert(0, self.upload_check)

    @extend_schema(
        request={"multipart/form-data": SubmissionCreateSerializer, "application/json": SubmissionCreateSerializer,
                 "application/x-www-form-urlencoded": SubmissionCreateSerializer},
        responses={202: SubmissionSerializer, 400: error("Invalid field (named in the body)"),
                   404: error("No such project for this partner"),
                   409: error("Idempotency-Key conflict"),
                   413: error("Too large"),
                   415: error("Media kind not accepted by the project")},
        parameters=[OpenApiParameter(
            "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
            description="One per submission, the same on every retry: a request whose connection dropped "
                        "before the answer can then be sent again without creating a second submission.")],
    )
    def post(self, request, slug: str):
        partner = request.user
        project = get_object_or_404(partner_projects(partner), slug=slug)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
            return Response({"Idempotency-Key": [f"1 to {MAX_IDEMPOTENCY_KEY} characters."]}, status=400)
        try:
            content = intake.parse_input(request.data, request.FILES, project)
            if content.media is not None and intake.MEDIA_FIELD in self.upload_check.sha256:
                content.sha256 = self.upload_check.sha256[intake.MEDIA_FIELD].hexdigest()
            if key:
                digest = idempotency.fingerprint(
                    project=project.slug, sha256=intake.digest(content), field=content.content_field,
                    metadata=content.metadata, external_id=content.external_id,
                )
                replay = idempotency.begin(partner, key, digest)
                if replay is not None and replay.submission is not None:
                    return self.accepted(partner, key, partner_submissions(partner).get(pk=replay.submission.pk))
                if replay is not None:
                    return Response(replay.body, status=replay.status)
            try:
                try:
                    submission = intake.create_submission(partner, project, content, idempotency_key=key or None,
                                                          idempotency_fingerprint=digest if key else "")
                except IntegrityError:
                    # A repeat whose stored answer was pruned: its submission holds the key.
                    kept = idempotency.kept_by_submission(partner, key, digest) if key else None
                    if kept is None:
                        raise
                    return self.accepted(partner, key, partner_submissions(partner).get(pk=kept.pk))
            except BaseException:  # the key's reservation is given back, whatever went wrong
                if key:
                    idempotency.abandon(partner, key)
                raise
        except intake.IntakeError as error:
            response = Response({error.field: [error.message]}, status=error.status)
            if error.status == status.HTTP_503_SERVICE_UNAVAILABLE:
                response["Retry-After"] = "60"
            return response
        except idempotency.KeyConflict as conflict:
            exc = Conflict({"Idempotency-Key": [str(conflict)]})
            response = self.handle_exception(exc)
            if conflict.in_flight:
                response["Retry-After"] = "1"
            return response
        # A new submission has no results yet: spare the serializer that query.
        submission._prefetched_objects_cache = {"results": []}
        return self.accepted(partner, key, submission)

    @staticmethod
    def accepted(partner, key: str | None, submission) -> Response:
        body = submission_json(submission)
        if key:  # the replay stores the body as JSON exactly as it was sent
            idempotency.complete(partner, key, status.HTTP_202_ACCEPTED, json.loads(JSONRenderer().render(body)))
        return Response(body, status=status.HTTP_202_ACCEPTED)


class SubmissionCursor(TimestampCursorPagination):
    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


@extend_schema_view(get=extend_schema(responses={
    200: SubmissionSerializer(many=True),
    400: error("Invalid filter value (named in the body)"),
    404: error("Invalid cursor"),
}))
class SubmissionList(generics.ListAPIView):
    serializer_class = SubmissionSerializer
    pagination_class = SubmissionCursor
    filterset_class = SubmissionFilter

    def get_queryset(self):
        return partner_submissions(self.request.user)


@extend_schema_view(get=extend_schema(responses={200: SubmissionSerializer,
                                                 404: error("No such submission for this partner")}))
class SubmissionDetail(generics.RetrieveAPIView):
    serializer_class = SubmissionSerializer
    lookup_field = "pk"

    def get_queryset(self):
        return partner_submissions(self.request.user)
