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
from django.utils.functional import cached_property

from moderation.services.counting import capped_count

# Page links reach this many pages past the current one.
LOOKAHEAD_PAGES = 9
# Rows the page links reach; past them, the filters narrow the list. An OFFSET
# reads and drops every row before the page, so deeper pages would cost more
# and more, and a ?p= too big for the database's integers would be an error.
MAX_ROWS = 50_000


class CheapPaginator(Paginator):
    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, *, current_page: int = 1):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.current_page = max(1, current_page)
        self.capped = False

    @cached_property
    def count(self) -> int:
        """Rows up to `limit`, counted in a bounded subquery: the database
        stops reading at the limit. `capped` says there may be more.
        A page past the counted ones is out of range (the changelist sends
        it to the first page with ?e=1), however big its number."""
        pages = min(self.current_page + LOOKAHEAD_PAGES, MAX_ROWS // self.per_page)
        limit = pages * self.per_page + 1
        counted = capped_count(self.object_list, limit)
        self.capped = counted >= limit
        return counted


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
