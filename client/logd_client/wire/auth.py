"""The handshake: HELO, PING and PONG encoders and the digests PING and PONG carry.

Takes nonces and salts as arguments (random salt only by default); no socket, clock or file.
"""

from __future__ import annotations

import hashlib
import os

from .encode import packb, require_bytes, require_str

__all__ = [
    "encode_helo",
    "encode_ping",
    "encode_pong",
    "password_digest",
    "shared_key_digest",
]


def encode_helo(nonce: bytes, auth: bytes = b"", keepalive: bool = True) -> bytes:
    """Encode the server's ``["HELO", {"nonce", "auth", "keepalive"}]``.

    Args:
        nonce: Random bytes the client must hash into its PING digest.
        auth: Salt for user authentication; empty when no username/password is required.
        keepalive: Whether the server allows long-lived connections.
    """
    options = {
        "nonce": require_bytes(nonce, "nonce"),
        "auth": require_bytes(auth, "auth"),
        "keepalive": bool(keepalive),
    }
    return packb(["HELO", options])


def shared_key_digest(salt: bytes, hostname: str, nonce: bytes, shared_key: str) -> str:
    """Return ``sha512_hex(salt + hostname + nonce + shared_key)``, as PING and PONG carry it.

    Compare digests with :func:`hmac.compare_digest`.
    """
    digest = hashlib.sha512(salt)
    digest.update(hostname.encode("utf-8", "surrogateescape"))
    digest.update(nonce)
    digest.update(shared_key.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def password_digest(auth: bytes, username: str, password: str) -> str:
    """Return ``sha512_hex(auth_salt + username + password)``, the PING ``password`` field."""
    digest = hashlib.sha512(auth)
    digest.update(username.encode("utf-8", "surrogateescape"))
    digest.update(password.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def encode_ping(
    hostname: str,
    shared_key: str,
    nonce: bytes,
    *,
    salt: bytes | None = None,
    username: str = "",
    password: str = "",
) -> bytes:
    """Encode the client's ``["PING", hostname, salt, hexdigest, username, password]``.

    Args:
        hostname: The client's hostname, also hashed into the digest.
        shared_key: The shared secret; only its digest is sent.
        nonce: The nonce from the server's HELO.
        salt: The shared-key salt; 16 random bytes when None.
        username: Username, or empty when the server's HELO had an empty ``auth``.
        password: The already hashed password (see :func:`password_digest`), or empty.
    """
    hostname = require_str(hostname, "hostname")
    salt = os.urandom(16) if salt is None else require_bytes(salt, "salt")
    digest = shared_key_digest(
        salt, hostname, require_bytes(nonce, "nonce"), require_str(shared_key, "shared_key")
    )
    return packb(
        [
            "PING",
            hostname,
            salt,
            digest,
            require_str(username, "username"),
            require_str(password, "password"),
        ]
    )


def encode_pong(
    auth_result: bool, reason: str, hostname: str, shared_key: str, nonce: bytes, salt: bytes
) -> bytes:
    """Encode the server's ``["PONG", auth_result, reason, hostname, hexdigest]``.

    The digest (over the client's salt, our hostname, our nonce and the key) is sent only on
    success: on failure it would hand a client with the wrong key an oracle for the right one.
    """
    hostname = require_str(hostname, "hostname")
    digest = ""
    if auth_result:
        digest = shared_key_digest(
            require_bytes(salt, "salt"),
            hostname,
            require_bytes(nonce, "nonce"),
            require_str(shared_key, "shared_key"),
        )
    return packb(["PONG", bool(auth_result), require_str(reason, "reason"), hostname, digest])
