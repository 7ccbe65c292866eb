"""Reading datalists: the JSON and CSV case lists that ``evaluate`` and ``batch`` take.

A datalist is either

* JSON: a list of case dictionaries, or a MONAI-style dictionary holding that list under a key
  (``{"testing": [...]}``, as in MONAI's ``load_decathlon_datalist``), or
* CSV: a header row naming the columns, then one case per row (UTF-8, a byte-order mark is fine).

Relative paths in a datalist are resolved against the datalist's own folder, as MONAI does.
Values are returned as read; each workflow checks the columns it needs.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from monai_fusion.errors import InputError

__all__ = ["read_datalist", "resolve_datalist_path"]


def read_datalist(path: str | Path, list_keys: Sequence[str] | None = None) -> list[dict]:
    """The case dictionaries of a JSON or CSV datalist, in file order.

    Args:
        path: the datalist file (``.csv`` is read as CSV, anything else as JSON).
        list_keys: for a JSON dictionary, the keys that may hold the case list (exactly one of
            them must be present). ``None``: the dictionary must hold exactly one list.

    Raises:
        InputError: missing or unreadable file, invalid JSON, no case list, or items that are
            not dictionaries (the message names the file and the item number).

    Example:
        >>> read_datalist("cases.json", list_keys=("testing", "cases", "data"))  # doctest: +SKIP
        [{'id': 'p001', 'mri': 'p001/t1.nii.gz', 'pet': 'p001/pet'}]
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"datalist {path} does not exist; check the path")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a UTF-8 text file; save the datalist as UTF-8 JSON or CSV") from None
    except OSError as err:
        raise InputError(f"cannot read datalist {path}: {err.strerror or err}") from None
    items = _csv_items(path, text) if path.suffix.lower() == ".csv" else _json_items(path, text, list_keys)
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise InputError(f"{path}: case {number} is a {type(item).__name__}, not a dictionary of columns")
    return items


def resolve_datalist_path(value: str | Path, datalist: str | Path) -> Path:
    """``value`` as a path: absolute as given, relative to the datalist's folder otherwise."""
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else Path(datalist).parent / candidate


def _csv_items(path: Path, text: str) -> list[dict]:
    try:
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
    except csv.Error as err:
        raise InputError(f"{path} is not a valid CSV file ({err})") from None
    if reader.fieldnames is None:
        raise InputError(f"{path} is empty; a CSV datalist needs a header row and one row per case")
    items = []
    for row in rows:
        if None in row:  # more cells than header columns
            raise InputError(f"{path}, line {reader.line_num}: more cells than header columns; quote values that contain commas")
        cleaned = {key.strip(): (value.strip() if isinstance(value, str) else value) for key, value in row.items() if key}
        if any(cleaned.values()):  # blank lines and all-empty rows are not cases
            items.append({key: value for key, value in cleaned.items() if value not in ("", None)})
    return items


def _json_items(path: Path, text: str, list_keys: Sequence[str] | None) -> list:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    if isinstance(data, dict):
        data = _case_list(path, data, list_keys)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of cases")
    return data


def _case_list(path: Path, data: dict, list_keys: Sequence[str] | None) -> list:
    if list_keys is None:
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise InputError(f"{path}: a datalist dictionary needs exactly one list of cases (e.g. 'testing')")
        return lists[0]
    present = [key for key in list_keys if key in data]
    if len(present) != 1:
        wanted = " or ".join(repr(key) for key in list_keys)
        found = ", ".join(repr(key) for key in data) or "none"
        problem = "several of" if present else "none of"
        raise InputError(f"{path}: the datalist dictionary must hold exactly one case list under {wanted} "
                         f"({problem} them found; keys present: {found})")
    return data[present[0]]
