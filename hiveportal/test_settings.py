"""Settings for the test suite: demo mode (simulator mounted), tasks inline.

The environment is set before the real settings are imported because
django-q2 reads its configuration once, at import.
"""

import os

os.environ.setdefault("HIVE_SIMULATOR", "1")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-for-the-suite-only-0123456789abcdef")
os.environ.setdefault("ALLOW_PRIVATE_URLS", "1")
os.environ.setdefault("Q_SYNC", "1")
os.environ.setdefault("MEDIA_ROOT", os.path.join(os.environ.get("TMPDIR", "/tmp"), "hiveportal-test-media"))

from hiveportal.settings import *  # noqa: E402,F401,F403
from hiveportal.settings import DATABASES, VAR_DIR  # noqa: E402

VAR_DIR.mkdir(exist_ok=True)

# A file, not memory, so worker and server subprocesses in end-to-end tests
# see the same test database.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
# WhiteNoise warns when STATIC_ROOT does not exist; the suite never collects.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
