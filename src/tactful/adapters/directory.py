"""Where a customer is reached: customer id → email address (or phone, device).

``Directory`` is what the sender asks; the reference ``JsonLinesDirectory`` reads a
file of JSON lines (``{"customer_id": "cust-42", "email": "ana@example.org"}``, with
``"phone"`` (SMS and calls) and ``"push"`` (a device token) optional) and reads it
again when the file changes. A bad line refuses the file by its line number only: an
address is never put in an error or a log line.
"""

from __future__ import annotations

import os
from typing import Protocol

import msgspec

from tactful.core.errors import TactfulError

_FIELDS = ("email", "phone", "push")
# The field of a channel's address: an SMS goes to the phone number.
CHANNEL_FIELD = {"email": "email", "sms": "phone", "phone": "phone", "push": "push"}


class DirectoryError(TactfulError):
    """The directory cannot be read (the message names the file and line, no content)."""


class Directory(Protocol):
    def address(self, customer_id: str, channel: str) -> str | None:
        """The customer's address for ``channel``, or None when there is none."""
        ...

    def refresh(self) -> bool:
        """Read the addresses again if they changed (``DirectoryError`` when the new
        version is bad: the previous one stays in use)."""
        ...


class _Entry(msgspec.Struct, forbid_unknown_fields=False):
    customer_id: str
    email: str | None = None
    phone: str | None = None
    push: str | None = None


_decode = msgspec.json.Decoder(_Entry)


def read_directory(path: str) -> dict[str, dict[str, str]]:
    """customer id → {channel: address}; a later line for a customer wins."""
    entries: dict[str, dict[str, str]] = {}
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    entry = _decode.decode(line)
                except (msgspec.ValidationError, msgspec.DecodeError):
                    raise DirectoryError(
                        f"{path}:{number}: not a JSON object with a customer_id and "
                        f"string addresses") from None
                addresses = {f: v for f in _FIELDS if (v := getattr(entry, f))}
                entries[entry.customer_id] = addresses
    except OSError as exc:
        raise DirectoryError(f"cannot read {path}: {exc.strerror}") from None
    return entries


class JsonLinesDirectory:
    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp = self._stat()
        self._entries = read_directory(path)

    def _stat(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise DirectoryError(f"cannot read {self.path}: {exc.strerror}") from None
        return st.st_mtime_ns, st.st_size

    def refresh(self) -> bool:
        """Read the file again when it changed; a bad new version keeps the old one."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        entries = read_directory(self.path)
        self._entries, self._stamp = entries, stamp
        return True

    def address(self, customer_id: str, channel: str) -> str | None:
        field = CHANNEL_FIELD.get(channel)
        return None if field is None else self._entries.get(customer_id, {}).get(field)

    def __len__(self) -> int:
        return len(self._entries)
