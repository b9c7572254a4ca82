"""How an id (app, run, session, call, bot, logger) becomes a file or folder name (SPEC §4).

The one naming rule the writer, the index rebuild, retention's scan and every reader
share, so a path computed on one side is found on the other. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from urllib.parse import quote

MAX_NAME_CHARS = 128
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._:-]*")
_QUOTE_SAFE = "_-.:"


@lru_cache(maxsize=4096)
def safe_name(ident: str) -> str:
    """A file-name form of an id that cannot leave its folder and keeps ids distinct.

    Safe ids are used as they are. Others are percent-encoded (a safe id never contains
    `%`); one still longer than 128 characters is cut and suffixed with `~` and a hash of
    the whole id (`~` never appears otherwise, since it is encoded too).
    """
    if len(ident) <= MAX_NAME_CHARS and _SAFE_NAME_RE.fullmatch(ident):
        return ident
    encoded = quote(ident, safe=_QUOTE_SAFE)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    encoded = encoded.replace("~", "%7E") or "%"
    if len(encoded) > MAX_NAME_CHARS:
        digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        encoded = encoded[: MAX_NAME_CHARS - 17] + "~" + digest
    return encoded
