"""The product's URLs plus two bare views that the HTTP benchmarks measure the
product against, in the same gunicorn process (bench/settings.py):

- `bench/bare/store/`: stores the multipart upload `media` as it is and answers 201:
  the floor for a partner upload (bench/intake_bench.py).
- `bench/bare/ok/`: reads the body and answers 200: the floor for Hive's callback
  (bench/callbacks_bench.py).
"""

import uuid

from django.core.files.storage import default_storage
from django.http import JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from moderation.callback_views import MAX_CALLBACK_BYTES


@csrf_exempt
@require_POST
def bare_store(request):
    upload = request.FILES["media"]
    name = default_storage.save(f"bench/{uuid.uuid4().hex}.png", upload)
    return JsonResponse({"stored": name}, status=201)


@csrf_exempt
@require_POST
def bare_ok(request):
    body = request.read(MAX_CALLBACK_BYTES + 1)
    return JsonResponse({"received": True, "bytes": len(body)})


urlpatterns = [
    path("bench/bare/store/", bare_store),
    path("bench/bare/ok/", bare_ok),
    path("", include("hiveportal.urls")),
]
