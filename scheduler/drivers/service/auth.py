"""Who is calling, and which sites they may cap.

Each grid coordinator has a bearer token, sent as gRPC metadata
``authorization: Bearer <token>``. The auth file (YAML) stores only a salted scrypt hash of
each token and the sites its holder may cap::

    coordinators:
      - name: guangdong-dispatch
        token_hash: scrypt$16384$8$1$<salt hex>$<hash hex>
        sites: [shantou]            # or ["*"] for every site

``greensched caps hash-token`` prints such an entry. A verified token is remembered in memory
by its SHA-256 so that scrypt runs once per token and process, not once per call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from scheduler.contracts import UserError

__all__ = [
    "MIN_TOKEN_CHARS",
    "AuthError",
    "Authenticator",
    "Coordinator",
    "ScopeError",
    "hash_token",
    "verify_token",
]

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
ALL_SITES = "*"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class AuthError(Exception):
    """No or an unknown bearer token (gRPC UNAUTHENTICATED)."""


class ScopeError(Exception):
    """A known coordinator acting on a site outside its scope (gRPC PERMISSION_DENIED)."""


@dataclass(frozen=True)
class Coordinator:
    """A caller: its name and the sites it may cap (``None`` = every site)."""

    name: str
    sites: frozenset[str] | None

    def may_cap(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def require(self, sites: Iterable[str], action: str) -> None:
        """Raise :class:`ScopeError` naming the sites ``action`` touches outside the scope."""
        outside = sorted(s for s in set(sites) if not self.may_cap(s))
        if outside:
            allowed = ", ".join(sorted(self.sites or ())) or "none"
            raise ScopeError(
                f"coordinator {self.name!r} may not {action} site(s) {', '.join(outside)}; "
                f"its sites: {allowed}"
            )


def hash_token(token: str, salt: bytes | None = None) -> str:
    """The auth-file hash of ``token``: ``scrypt$N$r$p$<salt hex>$<hash hex>``."""
    if len(token) < MIN_TOKEN_CHARS:
        raise UserError(
            f"token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(token.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_token(token: str, token_hash: str) -> bool:
    """Whether ``token`` matches an auth-file hash (constant-time compare)."""
    kind, n, r, p, salt, digest = token_hash.split("$")
    if kind != "scrypt":
        raise UserError(f"token_hash kind {kind!r} is unknown; allowed: scrypt")
    computed = hashlib.scrypt(
        token.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(computed, bytes.fromhex(digest))


@dataclass(frozen=True)
class _Entry:
    coordinator: Coordinator
    token_hash: str


class Authenticator:
    """Maps request metadata to a :class:`Coordinator`; ``open()`` accepts everyone."""

    def __init__(self, entries: Sequence[_Entry] | None) -> None:
        self._entries = entries
        self._verified: dict[bytes, Coordinator] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls) -> Authenticator:
        """No auth file: every caller is ``anonymous`` with every site (loopback only)."""
        return cls(None)

    @property
    def is_open(self) -> bool:
        return self._entries is None

    @classmethod
    def from_file(cls, path: str | Path, known_sites: Iterable[str]) -> Authenticator:
        """Read an auth file; errors name the file, the entry and what is allowed."""
        path = Path(path)
        known = set(known_sites)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise UserError(f"{path}: cannot read auth file: {error}") from None
        items = data.get("coordinators") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise UserError(f"{path}: needs a non-empty list 'coordinators'")
        entries, names = [], set()
        for k, item in enumerate(items):
            where = f"{path}: coordinators[{k}]"
            if not isinstance(item, dict) or set(item) != {"name", "token_hash", "sites"}:
                raise UserError(f"{where}: needs exactly the keys name, token_hash, sites")
            name, token_hash, sites = item["name"], str(item["token_hash"]), item["sites"]
            if not isinstance(name, str) or not name or name in names:
                raise UserError(f"{where}: name must be a unique non-empty string")
            if token_hash.count("$") != 5 or not token_hash.startswith("scrypt$"):
                raise UserError(
                    f"{where}: token_hash must look like scrypt$N$r$p$salt$hash "
                    "(print one with `greensched caps hash-token`)"
                )
            if not isinstance(sites, list) or not sites:
                raise UserError(f"{where}: sites must be a list of site names or ['*']")
            unknown = [s for s in sites if s != ALL_SITES and s not in known]
            if unknown:
                raise UserError(
                    f"{where}: unknown site(s) {', '.join(map(str, unknown))}; known sites: "
                    f"{', '.join(sorted(known))} or '*'"
                )
            scope = None if ALL_SITES in sites else frozenset(sites)
            names.add(name)
            entries.append(_Entry(Coordinator(name, scope), token_hash))
        log.info("auth: %d coordinator(s) from %s", len(entries), path)
        return cls(entries)

    def identify(self, metadata: Iterable[tuple[str, str | bytes]]) -> Coordinator:
        """The coordinator whose bearer token is in ``metadata``; :class:`AuthError` if none."""
        if self._entries is None:
            return Coordinator("anonymous", None)
        header = next((v for k, v in metadata if k == "authorization"), None)
        if header is None:
            raise AuthError("no 'authorization: Bearer <token>' metadata")
        text = header.decode(errors="replace") if isinstance(header, bytes) else header
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("authorization metadata must be 'Bearer <token>'")
        token = token.strip()
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            known = self._verified.get(key)
        if known is not None:
            return known
        for entry in self._entries:
            if verify_token(token, entry.token_hash):
                with self._lock:
                    self._verified[key] = entry.coordinator
                return entry.coordinator
        raise AuthError("unknown bearer token")
