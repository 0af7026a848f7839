"""The dashboard's pages, one per file: `overview`, `nodes`, `actors`, `logs`; `page` is what they
share (a page is its data, its template, its live fragments and its log tail)."""
