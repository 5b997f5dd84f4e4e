"""Counts over big tables that stop reading at a cap: COUNT(*) over a LIMITed
subquery. The subquery selects a constant, not the id, so a filtered count is
read from an index alone. For the admin's lists and queue board and the portal's
dashboard, where "1,000+" says enough."""

from __future__ import annotations

from django.db import connections
from django.db.models import IntegerField, QuerySet, Subquery, Value


class CappedCount(Subquery):
    """The capped count as an expression, e.g. one per project in an annotate()."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS capped)"
    output_field = IntegerField()

    def __init__(self, queryset: QuerySet, limit: int, **extra):
        super().__init__(_ones(queryset, limit), **extra)


def capped_count(queryset: QuerySet, limit: int) -> int:
    """The rows of `queryset`, counted up to `limit`, in one statement."""
    inner = _ones(queryset, limit)
    sql, params = inner.query.sql_with_params()
    with connections[inner.db].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) capped", params)
        return cursor.fetchone()[0]


def _ones(queryset: QuerySet, limit: int) -> QuerySet:
    return queryset.order_by().annotate(_one=Value(1)).values("_one")[:limit]
