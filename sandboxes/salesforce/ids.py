"""Salesforce record ids: 15-character case-sensitive ids and their 18-character case-safe form.

An id is a 3-character key prefix naming the object (``001`` Account, ``006`` Opportunity...),
2 characters of pod, 1 reserved character and a 9-character base-62 counter. The 18-character
form appends a 3-character checksum: for each 5-character chunk of the 15-character id, a
5-bit number whose bit *i* is set when character *i* is an uppercase letter, mapped through
``A..Z0..5``. That makes the id safe for case-insensitive systems (spreadsheets, some DBs).
"""

from __future__ import annotations

import itertools
import re
import threading

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID15 = re.compile(r"^[a-zA-Z0-9]{15}$")
_ID18 = re.compile(r"^[a-zA-Z0-9]{18}$")

POD = "5g"
RESERVED = "0"

# Key prefixes of the non-sObject ids the sandbox hands out.
ORGANIZATION_PREFIX = "00D"
QUERY_LOCATOR_PREFIX = "01g"
OUTBOUND_ACTION_PREFIX = "04k"
OUTBOUND_NOTIFICATION_PREFIX = "04l"


def checksum(id15: str) -> str:
    """The 3-character case-safe suffix of a 15-character id."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += CHECKSUM_ALPHABET[bits]
    return suffix


def to18(record_id: str) -> str:
    """The 18-character form of a 15- or 18-character id; raises ValueError if malformed."""
    if _ID15.match(record_id):
        return record_id + checksum(record_id)
    if _ID18.match(record_id):
        id15 = record_id[:15]
        if record_id[15:].upper() != checksum(id15):
            raise ValueError(f"malformed id {record_id!r}: checksum mismatch")
        return id15 + checksum(id15)
    raise ValueError(f"malformed id {record_id!r}")


def is_valid(record_id: str) -> bool:
    try:
        to18(record_id)
    except ValueError:
        return False
    return True


def prefix_of(record_id: str) -> str:
    return record_id[:3]


def _base62(number: int, width: int) -> str:
    digits = ""
    while number:
        number, rem = divmod(number, 62)
        digits = BASE62[rem] + digits
    return digits.rjust(width, "0")


class IdGenerator:
    """Hands out unique 18-character ids for key prefixes, deterministically in order."""

    def __init__(self, start: int = 0x4C3D2) -> None:
        # Start from a number that mixes letters and digits so ids look like real ones and
        # exercise the checksum (an all-digit id has the trivial checksum "AAA").
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def new(self, key_prefix: str) -> str:
        if len(key_prefix) != 3:
            raise ValueError(f"key prefix must have 3 characters, got {key_prefix!r}")
        with self._lock:
            number = next(self._counter)
        # Spread consecutive numbers so neighbouring ids differ in more than the last digit.
        id15 = key_prefix + POD + RESERVED + _base62(number * 7919 + 2_000_000_000, 9)
        return id15 + checksum(id15)
