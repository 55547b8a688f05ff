"""The tables of an HTML page, by id, as rows of cell texts: how the tests read the class report."""

from __future__ import annotations

from html.parser import HTMLParser


class Tables(HTMLParser):
    """Every table with an id, as rows of cell texts; and every script element or event handler seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.live: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.live += [f"<{tag} {name}>" for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.live.append("<script>")
        if tag == "table":
            self._table = dict(attrs).get("id")
            self.tables[self._table or ""] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])      # a header row stays empty and is dropped at its end
        elif tag == "td" and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._table is not None and not self.tables[self._table][-1]:
            self.tables[self._table].pop()
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> Tables:
    """The tables of a page written by coursekit (the class report), parsed."""
    parser = Tables()
    parser.feed(html)
    return parser
