"""CSV rows that a spreadsheet opens as text: no cell from outside data is ever run as a formula."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(row: Iterable[Any]) -> list[Any]:
    """A CSV row whose text cells cannot start a formula (OWASP's CSV-injection advice).

    Parameters
    ----------
    row : iterable
        Cell values; numbers and None pass as they are.

    Returns
    -------
    list
        Text cells that begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return get a leading ``'``,
        which spreadsheets take as "this is text" (a wafer id ``=HYPERLINK(...)`` from a manifest stays text).
    """
    return [f"'{cell}" if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS) else cell for cell in row]
