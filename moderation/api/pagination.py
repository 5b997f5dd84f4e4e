"""Cursor pagination over a timestamp ordering, whose every invalid cursor is
DRF's 404 "Invalid cursor", and whose invalid `page_size` is a 400 naming it."""

from __future__ import annotations

from datetime import timezone as dt_timezone

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination


class TimestampCursorPagination(CursorPagination):
    """For an `ordering` whose first field is a timestamp.

    DRF puts the cursor's position into the query as it is: a forged cursor
    whose position is not a timestamp raised Django's ValidationError, and one
    with a UTC offset PostgreSQL cannot hold (Python takes up to 23:59,
    PostgreSQL 15:59) a DataError, both 500s. The position is now parsed and
    passed on in UTC, and one that is no timestamp is an invalid cursor."""

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is None or cursor.position is None:
            return cursor
        try:
            moment = parse_datetime(cursor.position)
            if moment is None:
                raise ValueError(cursor.position)
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment)
            moment = moment.astimezone(dt_timezone.utc)
        except (ValueError, OverflowError):
            raise NotFound(self.invalid_cursor_message) from None
        return Cursor(offset=cursor.offset, reverse=cursor.reverse, position=str(moment))

    def get_page_size(self, request):
        """The page size asked for, capped at `max_page_size`. DRF took one that
        is no whole number above 0 (`abc`, `0`, `-1`) for the default without a
        word; it is a 400 now. Absent or empty is the default, as an empty
        filter is no filter."""
        value = request.query_params.get(self.page_size_query_param)
        if not value:
            return self.page_size
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError({self.page_size_query_param: [
                f"A whole number of at least 1; a page holds at most {self.max_page_size}."]})
        return min(size, self.max_page_size)
