"""Who is calling, which sites they may cap and read, and how often they may fail.

Each grid coordinator has a bearer token, sent as gRPC metadata
``authorization: Bearer <token>``. Tokens are long random secrets (at least
:data:`MIN_TOKEN_CHARS` characters, e.g. ``secrets.token_urlsafe(32)``: 256 bits), so, as package
registries and code hosts do with API tokens, the auth file (YAML) stores only their SHA-256
digest; a call costs one SHA-256 and one dict lookup of the digest (whose timing tells nothing of
the token, as the caller cannot choose the digest)::

    coordinators:
      - name: guangdong-dispatch
        token_hash: sha256$<64 hex digits>
        sites: [shantou]            # sites it may cap and read; ["*"] for every site
        read_all: true              # optional (default false): read every site's plan,
                                    # forecast, caps and reports

``greensched caps hash-token`` prints such an entry. Entries of the earlier salted-scrypt
format (``scrypt$...``) are refused at start-up: the token is not stored, so it cannot be
re-hashed here; its holder re-hashes it with ``greensched caps hash-token``.

Failed authentications are throttled per peer address (IPv6 per /64) with a token bucket
(:class:`FailureThrottle`): a peer that used up its burst is answered RESOURCE_EXHAUSTED at
once, without looking at its token, until the bucket refills. The table of peers is bounded.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from scheduler.contracts import UserError

__all__ = [
    "MIN_TOKEN_CHARS",
    "AuthError",
    "Authenticator",
    "Coordinator",
    "FailureThrottle",
    "ScopeError",
    "ThrottledError",
    "hash_token",
    "peer_address",
]

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 32
ALL_SITES = "*"
_HASH_KIND = "sha256"
_KEYS = {"name", "token_hash", "sites"}
_OPTIONAL_KEYS = {"read_all"}


class AuthError(Exception):
    """No or an unknown bearer token (gRPC UNAUTHENTICATED)."""


class ThrottledError(Exception):
    """Too many failed authentications from one peer (gRPC RESOURCE_EXHAUSTED)."""


class ScopeError(Exception):
    """A known coordinator acting on a site outside its scope (gRPC PERMISSION_DENIED)."""


@dataclass(frozen=True)
class Coordinator:
    """A caller: its name, the sites it may cap (``None`` = every site), and whether it may
    read every site (``read_all``) or only those it may cap."""

    name: str
    sites: frozenset[str] | None
    read_all: bool = False

    def may_cap(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def may_read(self, site: str) -> bool:
        return self.read_all or self.may_cap(site)

    def may_see(self, targets: Iterable[str]) -> bool:
        """Whether an event on ``targets`` is visible: one of them is readable."""
        return any(self.may_read(site) for site in targets)

    def require(self, sites: Iterable[str], action: str) -> None:
        """Raise :class:`ScopeError` naming the sites ``action`` touches outside the scope."""
        outside = sorted(s for s in set(sites) if not self.may_cap(s))
        if outside:
            allowed = ", ".join(sorted(self.sites or ())) or "none"
            raise ScopeError(
                f"coordinator {self.name!r} may not {action} site(s) {', '.join(outside)}; "
                f"its sites: {allowed}"
            )

    def readable(self, requested: Iterable[str], known: Iterable[str]) -> list[str]:
        """The sites of a read: ``requested`` (all readable ones when empty); raises
        :class:`ScopeError` for a requested site this caller may not read."""
        requested = list(requested)
        if not requested:
            return [site for site in known if self.may_read(site)]
        outside = sorted(s for s in set(requested) if not self.may_read(s))
        if outside:
            raise ScopeError(
                f"coordinator {self.name!r} may not read site(s) {', '.join(outside)}; "
                f"its sites: {', '.join(sorted(self.sites or ())) or 'none'}"
            )
        return requested


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def hash_token(token: str) -> str:
    """The auth-file hash of ``token``: ``sha256$<hex digest>``."""
    if len(token) < MIN_TOKEN_CHARS:
        raise UserError(
            f"token has {len(token)} characters; use a random one of at least "
            f"{MIN_TOKEN_CHARS} (for example: python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    return f"{_HASH_KIND}${_digest(token).hex()}"


def _parse_hash(token_hash: str, where: str) -> bytes:
    kind, _, hexdigest = token_hash.partition("$")
    rehash = (
        "print a new entry with `greensched caps hash-token --name NAME --site SITE < token-file`"
    )
    if kind == "scrypt":
        raise UserError(
            f"{where}: token_hash is in the old scrypt format, which costs a key derivation per "
            f"call; the token is not stored, so it cannot be converted here: {rehash} and "
            "replace the entry (the token stays the same)"
        )
    try:
        digest = bytes.fromhex(hexdigest)
    except ValueError:
        digest = b""
    if kind != _HASH_KIND or len(digest) != hashlib.sha256().digest_size:
        raise UserError(f"{where}: token_hash must look like sha256$<64 hex digits>: {rehash}")
    return digest


def peer_address(peer: str) -> str:
    """The address a gRPC peer string (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``) throttles
    under: the IPv4 address, the IPv6 /64 (one host often holds a whole /64), or the string."""
    kind, _, rest = peer.partition(":")
    host = rest.rpartition(":")[0].strip("[]")
    if kind == "ipv4" and host:
        return host
    if kind == "ipv6" and host:
        try:
            return str(ipaddress.ip_network(f"{host.split('%')[0]}/64", strict=False))
        except ValueError:
            return host
    return peer


class FailureThrottle:
    """Token buckets of failed authentications, one per peer address.

    A peer may fail ``burst`` times in a row, then once per ``1 / refill_per_s`` seconds; a
    call from a peer with an empty bucket is refused at once (never by sleeping). At most
    ``max_peers`` peers are remembered (least recently failed forgotten first), so the table
    stays bounded whatever the number of addresses.
    """

    def __init__(
        self,
        burst: int = 20,
        refill_per_s: float = 2.0,
        max_peers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst, self.refill_per_s, self.max_peers = burst, refill_per_s, max_peers
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (left, at)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def _left(self, address: str, now: float) -> float:
        left, at = self._buckets.get(address, (self.burst, now))
        return min(self.burst, left + (now - at) * self.refill_per_s)

    def check(self, address: str) -> None:
        """Raise :class:`ThrottledError` when ``address`` has no failure left."""
        with self._lock:
            now = self._clock()
            left = self._left(address, now)
        if left < 1:
            wait_s = (1 - left) / self.refill_per_s
            raise ThrottledError(
                f"too many failed authentications from {address}; retry in {wait_s:.1f} s"
            )

    def failed(self, address: str) -> None:
        """Count one failure of ``address``."""
        with self._lock:
            now = self._clock()
            left = self._left(address, now) - 1
            self._buckets[address] = (left, now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_peers:
                self._buckets.popitem(last=False)
        if 0 <= left < 1:
            log.warning("auth: %s used up its failed authentications; throttled", address)


class Authenticator:
    """Maps request metadata to a :class:`Coordinator`; ``open()`` accepts everyone."""

    def __init__(
        self, by_digest: Mapping[bytes, Coordinator] | None, throttle: FailureThrottle | None = None
    ) -> None:
        self._by_digest = by_digest
        self.throttle = throttle or FailureThrottle()

    @classmethod
    def open(cls) -> Authenticator:
        """No auth file: every caller is ``anonymous`` with every site (loopback only)."""
        return cls(None)

    @property
    def is_open(self) -> bool:
        return self._by_digest is None

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
        by_digest: dict[bytes, Coordinator] = {}
        names: set[str] = set()
        for k, item in enumerate(items):
            where = f"{path}: coordinators[{k}]"
            if not isinstance(item, dict) or not _KEYS <= set(item) <= _KEYS | _OPTIONAL_KEYS:
                raise UserError(
                    f"{where}: needs the keys name, token_hash, sites (and optionally read_all)"
                )
            name, sites, read_all = item["name"], item["sites"], item.get("read_all", False)
            if not isinstance(name, str) or not name or name in names:
                raise UserError(f"{where}: name must be a unique non-empty string")
            digest = _parse_hash(str(item["token_hash"]), f"{where} ({name})")
            if digest in by_digest:
                raise UserError(f"{where}: token_hash is the same as {by_digest[digest].name!r}")
            if not isinstance(sites, list) or not sites:
                raise UserError(f"{where}: sites must be a list of site names or ['*']")
            unknown = [s for s in sites if s != ALL_SITES and s not in known]
            if unknown:
                raise UserError(
                    f"{where}: unknown site(s) {', '.join(map(str, unknown))}; known sites: "
                    f"{', '.join(sorted(known))} or '*'"
                )
            if not isinstance(read_all, bool):
                raise UserError(f"{where}: read_all must be true or false")
            scope = None if ALL_SITES in sites else frozenset(sites)
            names.add(name)
            by_digest[digest] = Coordinator(name, scope, read_all)
        log.info("auth: %d coordinator(s) from %s", len(by_digest), path)
        return cls(by_digest)

    def identify(self, metadata: Iterable[tuple[str, str | bytes]], peer: str) -> Coordinator:
        """The coordinator whose bearer token is in ``metadata``. Raises
        :class:`ThrottledError` when ``peer`` failed too often, else :class:`AuthError` when
        the token is missing or unknown (and counts the failure)."""
        if self._by_digest is None:
            return Coordinator("anonymous", None)
        address = peer_address(peer)
        self.throttle.check(address)
        try:
            return self._lookup(metadata, self._by_digest)
        except AuthError:
            self.throttle.failed(address)
            raise

    @staticmethod
    def _lookup(
        metadata: Iterable[tuple[str, str | bytes]], by_digest: Mapping[bytes, Coordinator]
    ) -> Coordinator:
        header = next((v for k, v in metadata if k == "authorization"), None)
        if header is None:
            raise AuthError("no 'authorization: Bearer <token>' metadata")
        text = header.decode(errors="replace") if isinstance(header, bytes) else header
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("authorization metadata must be 'Bearer <token>'")
        coordinator = by_digest.get(_digest(token.strip()))
        if coordinator is None:
            raise AuthError("unknown bearer token")
        return coordinator
