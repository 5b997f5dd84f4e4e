"""Media in an S3-compatible object store (AWS S3, MinIO, Ceph, R2, ...).

django-storages' S3 backend does the writing: an upload streams to the bucket
in multipart chunks. Its reader, though, downloads the whole object into a
temporary file (in memory by default) before the first byte is read. Media is
read by the worker streaming to Hive and by the portal's media view seeking to
a byte range, so reads go through smart_open instead: ranged GETs as the
caller reads or seeks, a bounded buffer, and resumption if the connection
drops in the middle of a large video.

The bucket stays private: nothing here sets a public ACL, and `url()` (a
django-storages method) answers presigned URLs that expire after
AWS_QUERYSTRING_EXPIRE seconds.
"""

from __future__ import annotations

import threading

import smart_open
from botocore.exceptions import ClientError
from django.core.files import File
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

# Read-ahead per open file: memory stays at this, whatever the object's size.
READ_BUFFER_BYTES = 256 * 1024

# Sizes of the files this thread has open, learnt when opening them. The
# streaming multipart encoder asks a FieldFile for its length before every
# chunk, and FieldFile asks the storage: without this, one HEAD per 8 KB.
_open_sizes = threading.local()


def _sizes() -> dict[tuple[str, str], int]:
    if not hasattr(_open_sizes, "by_name"):
        _open_sizes.by_name = {}
    return _open_sizes.by_name


class StreamedFile(File):
    """A read-only file streamed from the bucket; forgets its size on close."""

    def __init__(self, reader, name: str, size: int, key: tuple[str, str]):
        super().__init__(reader, name=name)
        self.size = size
        self._key = key
        _sizes()[key] = size

    def close(self) -> None:
        _sizes().pop(self._key, None)
        super().close()


class PrivateS3Storage(S3Storage):
    def _open(self, name: str, mode: str = "rb") -> File:
        if mode.replace("b", "") != "r":
            return super()._open(name, mode)
        key = self._normalize_name(clean_name(name))
        try:
            size = self.bucket.Object(key).content_length  # HEAD: a missing file fails here, not mid-read
        except ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise FileNotFoundError(f"File does not exist: {name}") from None
            raise
        reader = smart_open.open(
            f"s3://{self.bucket_name}/{key}", "rb", compression="disable",
            transport_params={"client": self.connection.meta.client, "defer_seek": True,
                              "buffer_size": READ_BUFFER_BYTES},
        )
        return StreamedFile(reader, name, size, (self.bucket_name, name))

    def size(self, name: str) -> int:
        known = _sizes().get((self.bucket_name, name))
        return known if known is not None else super().size(name)
