"""Builders of Letterboxd and TV Time export files for the file-format tests and the bench.

Headers are the real ones from ``/work/shared/reference/letterboxd/README.md`` §2 and
``/work/shared/reference/tvtime/README.md`` §1; rows are written for the tests.
"""

from __future__ import annotations

import csv
import io
import struct
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def _columns(header_line: str) -> tuple[str, ...]:
    """Column names of a header row given as the file has it."""
    return tuple(header_line.split(","))


#: ``diary.csv`` and ``ratings.csv`` headers of a real Letterboxd export, README §2.
DIARY_HEADER = _columns("Date,Name,Year,Letterboxd URI,Rating,Rewatch,Tags,Watched Date")
RATINGS_HEADER = _columns("Date,Name,Year,Letterboxd URI,Rating")

#: ``tracking-prod-records-v2.csv`` header of a real export (trakt-web fixture), README §1.
V2_HEADER = _columns(
    "created_at,user_id,key,total_series_runtime,updated_at,total_movies_runtime,"
    "movie_watch_count,ep_watch_count,series_follow_count,uuid,is_archived,is_followed,s_id,"
    "is_for_later,most_recent_ep_watched,followed_at,runtime,bulk_type,s_no,ep_no,is_unitary,"
    "ep_id,rewatch_count,gsi,is_special,movie_name,series_name,season_number,episode_number"
)
#: The slim header of an account without watch history (no episode column), README §1.
V2_SLIM_HEADER = _columns(
    "created_at,user_id,key,total_series_runtime,updated_at,total_movies_runtime,"
    "movie_watch_count,ep_watch_count,series_follow_count,uuid,is_archived,is_followed,s_id,"
    "is_for_later,followed_at,series_name"
)
#: ``tracking-prod-records.csv`` (v1) header used by Trakt's tests, README §1.
V1_HEADER = _columns(
    "watch_count,uuid,type,series_name,type-uuid-n,updated_at,user_id,created_at,series_id,"
    "watches,runtime,release_date_range_key,release_date,alpha_range_key,movie_name,"
    "entity_type,follow_date_range_key,rewatch_count,watch_date,series_uuid,season_number,"
    "episode_number,episode_id,total_movies_runtime,total_series_runtime,unitarian,"
    "watched_episode_range_key,bulk_type,watch_date_range_key,country"
)


def csv_text(header: Sequence[str], rows: Iterable[Mapping[str, object]]) -> str:
    """CSV text (LF, as Letterboxd and TV Time write it) with *rows* placed by column name."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        unknown = set(row) - set(header)
        assert not unknown, f"columns not in the header: {unknown}"
        writer.writerow(["" if row.get(name) is None else row.get(name) for name in header])
    return buffer.getvalue()


def diary_row(
    name: str,
    year: int | str | None,
    watched: str,
    uri: str,
    *,
    rating: str = "",
    rewatch: bool = False,
    logged: str | None = None,
    tags: str = "",
) -> dict[str, object]:
    """One ``diary.csv`` row (README §2 value formats: ``Yes``/empty, ``0.5``…``5``)."""
    return {
        "Date": logged or watched,
        "Name": name,
        "Year": year,
        "Letterboxd URI": uri,
        "Rating": rating,
        "Rewatch": "Yes" if rewatch else "",
        "Tags": tags,
        "Watched Date": watched,
    }


def rating_row(
    name: str, year: int | str | None, rating: str, uri: str, logged: str = "2024-01-01"
) -> dict[str, object]:
    """One ``ratings.csv`` row; *uri* is the film's own URI (README §2)."""
    return {"Date": logged, "Name": name, "Year": year, "Letterboxd URI": uri, "Rating": rating}


def episode_row(
    created_at: str,
    key: str,
    *,
    s_id: str = "75707",
    s_no: str = "1",
    ep_no: str = "4",
    ep_id: str = "306587",
    series_name: str = "The Unit",
    **extra: object,
) -> dict[str, object]:
    """One ``watch-episode-``/``rewatch-episode-`` row of the v2 file (``key`` given whole)."""
    return {
        "created_at": created_at,
        "user_id": "12345678",
        "key": key,
        "updated_at": created_at,
        "s_id": s_id,
        "s_no": s_no,
        "ep_no": ep_no,
        "is_unitary": "false",
        "ep_id": ep_id,
        "rewatch_count": "0",
        "series_name": series_name,
        "season_number": s_no,
        "episode_number": ep_no,
        **extra,
    }


def write_text(path: Path, text: str, *, bom: bool = False, crlf: bool = False) -> Path:
    """Write *text* as UTF-8, optionally with a BOM and CRLF line ends (Excel on Windows)."""
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def write_zip(path: Path, members: Mapping[str, str | bytes], *, encrypted: bool = False) -> Path:
    """A ZIP of *members* (deflated). ``encrypted``: set the "encrypted" flag (bit 0) of every
    member in its local and central headers, as a password-protected ZIP has; ``zipfile``
    cannot encrypt and resets ``flag_bits`` when writing, so the bytes are patched after."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    data = bytearray(buffer.getvalue())
    if encrypted:
        _set_encrypted_flags(data)
    path.write_bytes(bytes(data))
    return path


def _set_encrypted_flags(data: bytearray) -> None:
    """Set bit 0 of the general purpose flags of each local and central directory header."""
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        local_offsets = [info.header_offset for info in archive.infolist()]
        central = archive.start_dir
    for at in local_offsets:  # local file header: signature, version, flags at +6
        assert data[at : at + 4] == b"PK\x03\x04"
        _or_flag(data, at + 6)
    at = central
    while data[at : at + 4] == b"PK\x01\x02":  # central directory header: flags at +8
        _or_flag(data, at + 8)
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        at += 46 + name_len + extra_len + comment_len


def _or_flag(data: bytearray, offset: int) -> None:
    (flags,) = struct.unpack_from("<H", data, offset)
    struct.pack_into("<H", data, offset, flags | 0x1)
