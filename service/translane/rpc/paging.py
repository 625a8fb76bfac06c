"""The one reading of a list request's `page_size` and `page_token` (Google's API convention), for the lists the
service answers a page at a time (operations, files)."""

from __future__ import annotations

from ..errors import InvalidRequest, quote

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Page", "page"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# (the number of the last item already shown, how many to show)
Page = tuple[int, int]


def page(page_size: int, page_token: str) -> Page:
    """Where a page starts and how long it is: `page_size` 0 is the default, past the most it is the most;
    InvalidRequest naming the field for a negative size or a token this server did not give."""
    if page_size < 0:
        raise InvalidRequest(f"page_size: must be 0 (the default, {DEFAULT_PAGE_SIZE}) or more")
    if page_token and not page_token.isdigit():
        raise InvalidRequest(f"page_token: {quote(page_token)} is not one this server gave")
    return int(page_token or 0), min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
