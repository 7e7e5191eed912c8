"""the members of a zip archive, read from its central directory: where each member's bytes are

`zipfile` reads a member through a Python file object in small chunks; the `.npz` reader needs only
where the bytes lie and what the archive says about them (method, sizes, CRC-32), so that it can read
a member in one call and inflate it in one call. This module parses the end-of-central-directory
record (zip64 included), the central directory, and a member's local header, and checks that each
stays inside the file. What it does not cover (split archives, encryption, an archive prepended with
other bytes) it reports as `None`, and the caller takes `numpy.load`'s path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["Member", "NotAZip", "read_directory", "member_data_offset", "STORED", "DEFLATED"]

STORED: int = 0
DEFLATED: int = 8

_EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory record (22 bytes + comment)
_EOCD64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes, just before the EOCD in a zip64 archive
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes + name + extra + comment
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes + name + extra
_MAX_COMMENT: int = 0xFFFF
_NOT_COVERED_FLAGS: int = 0x1 | 0x20 | 0x40
"flag bits zipfile refuses or needs a password for: encrypted, compressed patched data, strong encryption"


class NotAZip(ValueError):
    """no end-of-central-directory record: the file is not a zip archive (or lost its end)"""


@dataclass(frozen=True)
class Member:
    """one member as the central directory describes it

    # Fields:
     - `name : str`
     - `method : int` compression method (`STORED` 0, `DEFLATED` 8, anything else: not covered)
     - `flags : int` general purpose bit flags (encryption and patch bits: not covered)
     - `crc : int` CRC-32 of the uncompressed bytes
     - `compressed_size : int`, `size : int` bytes in the archive, bytes once inflated
     - `header_offset : int` where the member's local header starts
     - `raw_name : bytes` the name as stored (the local header must repeat it)
     - `extract_version : int` zip version needed to extract it (`zipfile` reads up to 6.3)
    """

    name: str
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    raw_name: bytes = b""
    extract_version: int = 20

    @property
    def covered(self) -> bool:
        """the direct reader reads it: stored or deflated, no encryption or patch flag, a zip version `zipfile` reads"""
        return self.method in (STORED, DEFLATED) and not self.flags & _NOT_COVERED_FLAGS and self.extract_version <= 63


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


def _zip64_extra(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int] | None:
    """the real sizes and offset from a zip64 extra field (id 1), for those saturated at 0xFFFFFFFF"""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if tag != 1:
            continue
        values, k = [], 0
        for v in (size, csize, offset):
            if v == 0xFFFFFFFF:
                if k + 8 > len(body):
                    return None
                values.append(struct.unpack_from("<Q", body, k)[0])
                k += 8
            else:
                values.append(v)
        return values[0], values[1], values[2]
    return None if 0xFFFFFFFF in (size, csize, offset) else (size, csize, offset)


def read_directory(f: BinaryIO, file_size: int) -> dict[str, Member] | None:
    """every member of the archive open as `f`, by name

    # Parameters:
     - `f : BinaryIO` the archive, opened for binary reading (seekable)
     - `file_size : int` its size in bytes

    # Returns:
     - `dict[str, Member] | None`
       `None` when the archive is one this reader does not cover (split over disks, prepended
       with other bytes, a directory that does not parse): read it with `zipfile` instead

    # Raises:
     - `NotAZip` when there is no end-of-central-directory record
     - `OSError` when the file cannot be read
    """
    tail_len = min(file_size, _EOCD.size + _MAX_COMMENT)
    tail_start = file_size - tail_len
    tail = _read_at(f, tail_start, tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    while pos >= 0 and pos + _EOCD.size > len(tail):
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    if pos < 0:
        raise NotAZip("no end of central directory record")
    _, disk, cd_disk, n_here, n_total, cd_size, cd_offset, _comment = _EOCD.unpack_from(tail, pos)
    eocd_at = tail_start + pos
    if disk != 0 or cd_disk != 0 or n_here != n_total:
        return None  # split archive
    loc_at = eocd_at - _EOCD64_LOCATOR.size
    if loc_at >= 0:
        loc = _read_at(f, loc_at, _EOCD64_LOCATOR.size)
        if loc[:4] == b"PK\x06\x07":
            _, _disk, eocd64_offset, _n_disks = _EOCD64_LOCATOR.unpack(loc)
            rec = _read_at(f, eocd64_offset, _EOCD64.size)
            if len(rec) != _EOCD64.size or rec[:4] != b"PK\x06\x06":
                return None
            _, _, _, _, d64, cd_d64, n_here, n_total, cd_size, cd_offset = _EOCD64.unpack(rec)
            if d64 != 0 or cd_d64 != 0 or n_here != n_total:
                return None
            eocd_at = eocd64_offset
    if cd_offset + cd_size != eocd_at:
        return None  # bytes before the archive (zipfile corrects offsets for that; we do not)
    cd = _read_at(f, cd_offset, cd_size)
    if len(cd) != cd_size:
        return None
    members: dict[str, Member] = {}
    pos = 0
    for _ in range(n_total):
        if pos + _CENTRAL.size > len(cd):
            return None
        (sig, _vmade, vneed, flags, method, _t, _d, crc, csize, size, n_name, n_extra, n_comment,
         _disk_start, _iattr, _eattr, offset) = _CENTRAL.unpack_from(cd, pos)
        if sig != b"PK\x01\x02":
            return None
        name_b = cd[pos + _CENTRAL.size : pos + _CENTRAL.size + n_name]
        extra = cd[pos + _CENTRAL.size + n_name : pos + _CENTRAL.size + n_name + n_extra]
        pos += _CENTRAL.size + n_name + n_extra + n_comment
        real = _zip64_extra(extra, size, csize, offset)
        if real is None:
            return None
        size, csize, offset = real
        name = name_b.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        members[name] = Member(name, method, flags, crc, csize, size, offset, bytes(name_b), vneed & 0xFF)
    return members


def member_data_offset(f: BinaryIO, member: Member, file_size: int) -> int:
    """where the member's (compressed) bytes start, after its local header

    # Raises:
     - `ValueError` when the local header is not where the directory says or names another
       member, or the member's bytes
       would run past the end of the file (a truncated archive)
    """
    head = _read_at(f, member.header_offset, _LOCAL.size)
    if len(head) != _LOCAL.size or head[:4] != b"PK\x03\x04":
        raise ValueError(f"no local header at byte {member.header_offset} (corrupted archive)")
    *_, n_name, n_extra = _LOCAL.unpack(head)
    if _read_at(f, member.header_offset + _LOCAL.size, n_name) != member.raw_name:
        raise ValueError(f"the local header of {member.name!r} names another file (corrupted archive)")
    start = member.header_offset + _LOCAL.size + n_name + n_extra
    if start + member.compressed_size > file_size:
        raise ValueError(
            f"truncated: the member's {member.compressed_size} bytes would end at byte "
            f"{start + member.compressed_size}, the file has {file_size}"
        )
    return start
