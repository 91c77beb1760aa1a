"""Structural checks of rosbag2 storage files, so a damaged bag is reported with the file and
byte offset where it breaks instead of being read as a shorter recording.

`rosbags` reads well-formed files; on a damaged one it either stops early or raises an error
that names no position. These checks walk the container itself first:

  MCAP    every record's opcode and length (and the records inside each uncompressed chunk,
          whose CRC is verified when the writer stored one) up to the closing magic.
  sqlite3 the header's page count against the file size, then SQLite's own `quick_check`,
          whose page numbers give the offsets.

A flipped bit inside an image payload cannot be found by either container unless the writer
stored chunk CRCs (`ros2 bag record` does for MCAP; `rosbags` writes none): the frame then
decodes and is scored as recorded.
"""

from __future__ import annotations

import mmap
import re
import sqlite3
import struct
import zlib
from pathlib import Path

MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
_MCAP_OPCODES = range(0x01, 0x11)
_OP_FOOTER, _OP_CHUNK = 0x02, 0x06


class BagError(ValueError):
    """A bag that cannot be used as it is, with the file and (when known) the byte offset."""

    def __init__(self, path: Path | str, message: str, offset: int | None = None) -> None:
        self.path, self.offset = Path(path), offset
        where = f"{self.path}" + (f" at byte {offset}" if offset is not None else "")
        super().__init__(f"{where}: {message}")


def _walk_records(path: Path, buf: mmap.mmap, start: int, end: int) -> int:
    """Walk MCAP records in buf[start:end]; return the offset just after the footer, or `end`."""
    off = start
    while off < end:
        if end - off < 9:
            raise BagError(path, f"truncated record header ({end - off} of 9 bytes left)", off)
        opcode = buf[off]
        (length,) = struct.unpack_from("<Q", buf, off + 1)
        if opcode not in _MCAP_OPCODES:
            raise BagError(path, f"unknown MCAP record opcode 0x{opcode:02x}", off)
        if off + 9 + length > end:
            raise BagError(path, f"record 0x{opcode:02x} of {length} bytes runs past the end "
                           f"({end - off - 9} bytes left): the file is truncated", off)
        if opcode == _OP_CHUNK:
            _check_chunk(path, buf, off + 9, off + 9 + length)
        off += 9 + length
        if opcode == _OP_FOOTER:
            return off
    return off


def _check_chunk(path: Path, buf: mmap.mmap, start: int, end: int) -> None:
    if end - start < 32:
        raise BagError(path, "chunk record too short", start - 9)
    _, _, size, crc, comp_len = struct.unpack_from("<QQQII", buf, start)
    comp_end = start + 32 + comp_len
    compression = bytes(buf[start + 32:comp_end]).decode("ascii", "replace")
    (rec_len,) = struct.unpack_from("<Q", buf, comp_end)
    rec_start = comp_end + 8
    if rec_start + rec_len > end:
        raise BagError(path, "chunk data runs past its record", start - 9)
    if compression:  # compressed chunks are checked by the reader that decompresses them
        return
    if crc and (computed := zlib.crc32(buf[rec_start:rec_start + rec_len])) != crc:
        raise BagError(path, f"chunk CRC mismatch (stored {crc:#010x}, computed {computed:#010x}): "
                       "the chunk is corrupt", start - 9)
    if rec_len != size:
        raise BagError(path, f"chunk says {size} bytes uncompressed, holds {rec_len}", start - 9)
    _walk_records(path, buf, rec_start, rec_start + rec_len)


def check_mcap(path: Path) -> None:
    """Raise `BagError` at the first malformed record of an MCAP file."""
    if path.stat().st_size < 2 * len(MCAP_MAGIC):
        raise BagError(path, f"{path.stat().st_size} bytes: too short to be an MCAP file", 0)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:len(MCAP_MAGIC)] != MCAP_MAGIC:
            raise BagError(path, "not an MCAP file (bad leading magic)", 0)
        end = len(data) - len(MCAP_MAGIC)
        after_footer = _walk_records(path, data, len(MCAP_MAGIC), len(data))
        if after_footer != end or data[end:] != MCAP_MAGIC:
            raise BagError(path, f"no footer and closing magic: the file ends at byte {len(data)} "
                           "inside the data section (truncated, or the recorder was killed)", after_footer)


def check_sqlite(path: Path) -> None:
    """Raise `BagError` if a rosbag2 sqlite3 file is shorter than its header says, or if
    SQLite finds damaged pages."""
    with path.open("rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise BagError(path, "not an SQLite database (bad header)", 0)
    (page_size,) = struct.unpack_from(">H", header, 16)
    page_size = 65536 if page_size == 1 else page_size
    (pages,) = struct.unpack_from(">I", header, 28)
    size = path.stat().st_size
    if pages and size < pages * page_size:
        raise BagError(path, f"file holds {size} bytes, its header says {pages} pages of {page_size} "
                       f"({pages * page_size} bytes): the file is truncated", size)
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as err:
        raise BagError(path, f"SQLite cannot read it: {err}") from None
    if problems != ["ok"]:
        page = re.search(r"page (\d+)", " ".join(problems))
        offset = (int(page.group(1)) - 1) * page_size if page else None
        raise BagError(path, "SQLite finds the database damaged: " + "; ".join(problems), offset)


def check_storage_file(path: Path) -> None:
    """Check one storage file of a bag by its suffix (.mcap or .db3)."""
    if not path.is_file():
        raise BagError(path, "storage file listed in metadata.yaml is missing")
    if path.suffix == ".mcap":
        check_mcap(path)
    elif path.suffix == ".db3":
        check_sqlite(path)
    else:
        raise BagError(path, f"unknown storage file type {path.suffix!r} (expected .mcap or .db3)")
