"""Pagination of list pages: page numbers from the query string, never an unbounded list."""

from __future__ import annotations

from dataclasses import dataclass

PER_PAGE = 50


@dataclass(frozen=True)
class Page:
    """One page of rows and where it sits among all the rows the actor may see."""

    rows: list
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def as_dict(self) -> dict:
        return {"page": self.page, "per_page": self.per_page, "total": self.total, "pages": self.pages}


def page_number(raw: str | int | None) -> int:
    """A page number from the query; anything odd reads as the first page."""
    try:
        n = int(raw or 1)
    except (TypeError, ValueError):
        return 1
    return min(max(n, 1), 1_000_000)
