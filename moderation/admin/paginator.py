"""Admin lists over tables with millions of rows, without `COUNT(*)`.

Django's changelist counts the filtered rows to draw its page links. On the
submission, result, receipt and event tables that count reads the whole table
(or the whole filtered part) on every page view. `CheapPaginator` counts at most
a few pages past the one asked for, so a page costs the same at a thousand rows
as at a million; the list then says "500+" instead of an exact total.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import PAGE_VAR
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet, Value
from django.utils.functional import cached_property

# Page links reach this many pages past the current one.
LOOKAHEAD_PAGES = 9


class CheapPaginator(Paginator):
    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, *, current_page: int = 1):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.current_page = max(1, current_page)
        self.capped = False

    @cached_property
    def count(self) -> int:
        """Rows up to `limit`, counted in a bounded subquery: the database
        stops reading at the limit. `capped` says there may be more."""
        limit = (self.current_page + LOOKAHEAD_PAGES) * self.per_page + 1
        counted = capped_count(self.object_list, limit)
        self.capped = counted >= limit
        return counted


def capped_count(queryset: QuerySet, limit: int) -> int:
    """COUNT(*) over at most `limit` rows. The subquery selects a constant,
    not the id, so a filtered count is read from an index alone."""
    inner = queryset.order_by().annotate(_one=Value(1)).values("_one")[:limit]
    sql, params = inner.query.sql_with_params()
    with connections[inner.db].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) capped", params)
        return cursor.fetchone()[0]


def requested_page(request) -> int:
    try:
        return int(request.GET.get(PAGE_VAR, 1))
    except (TypeError, ValueError):
        return 1


class BigTableAdmin(admin.ModelAdmin):
    """Defaults for lists over big tables: no full count, no facet counts,
    related rows joined instead of fetched one by one."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    list_max_show_all = 200
    # Columns no list shows that can be megabytes (a callback body, a raw result);
    # a change page loads its one row's value when it shows it.
    deferred: tuple[str, ...] = ()

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset.defer(*self.deferred) if self.deferred else queryset

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        return CheapPaginator(queryset, per_page, orphans, allow_empty_first_page,
                              current_page=requested_page(request))
