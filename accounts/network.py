"""The outbound part of the security policy: how Baton reads a URL or an address (the way browsers do:
every numeric IPv4 form, IDNA), how it classifies an address (private, loopback, metadata, …), and which
addresses an organisation may reach (`OutboundPolicy`). Pure Python: the policy API validates with it, and
the engine's outbound client (runs/engine/outbound.py) enforces it on every hop. See docs/security.md."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 8192


class OutboundError(Exception):
    """A refused or failed outbound request; `code` is stable and safe to show (no secrets in it)."""

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def __repr__(self) -> str:
        return f"OutboundError({self.code!r}, {self.message!r})"


# --- address classification -------------------------------------------------------------------------

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)

# Refused even when block_private_networks is off or the hostname is allowlisted: nothing legitimate
# lives there, and 0.0.0.0 reaches the local host on Linux. Only an IP/CIDR allowlist entry lets them through.
ALWAYS_BLOCKED_REASONS = frozenset({"metadata", "unspecified", "multicast", "broadcast"})

_net = ipaddress.ip_network
_IPV4_TABLE: tuple[tuple[IPNetwork, str], ...] = (
    (_net("0.0.0.0/8"), "unspecified"),
    (_net("10.0.0.0/8"), "private"),
    (_net("100.64.0.0/10"), "cgnat"),
    (_net("127.0.0.0/8"), "loopback"),
    (_net("169.254.0.0/16"), "link_local"),
    (_net("172.16.0.0/12"), "private"),
    (_net("192.0.0.0/24"), "reserved"),
    (_net("192.0.2.0/24"), "reserved"),
    (_net("192.88.99.0/24"), "reserved"),
    (_net("192.168.0.0/16"), "private"),
    (_net("198.18.0.0/15"), "reserved"),
    (_net("198.51.100.0/24"), "reserved"),
    (_net("203.0.113.0/24"), "reserved"),
    (_net("224.0.0.0/4"), "multicast"),
    (_net("255.255.255.255/32"), "broadcast"),
    (_net("240.0.0.0/4"), "reserved"),
)
_IPV6_TABLE: tuple[tuple[IPNetwork, str], ...] = (
    (_net("::/128"), "unspecified"),
    (_net("::1/128"), "loopback"),
    (_net("64:ff9b:1::/48"), "private"),  # local-use NAT64 (RFC 8215)
    (_net("100::/64"), "reserved"),  # discard-only
    (_net("2001:db8::/32"), "reserved"),  # documentation
    (_net("2001:10::/28"), "reserved"),
    (_net("2001:20::/28"), "reserved"),
    (_net("3fff::/20"), "reserved"),  # documentation (RFC 9637)
    (_net("5f00::/16"), "reserved"),  # SRv6 SIDs
    (_net("fc00::/7"), "unique_local"),
    (_net("fe80::/10"), "link_local"),
    (_net("fec0::/10"), "site_local"),
    (_net("ff00::/8"), "multicast"),
    (_net("::/8"), "reserved"),
)
_IPV4_COMPATIBLE = _net("::/96")
_NAT64 = _net("64:ff9b::/96")
_IPV4_TRANSLATED = _net("::ffff:0:0:0/96")


def _strip_scope(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    return ip


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address reaches through a transition mechanism, or None."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _IPV4_COMPATIBLE or ip in _NAT64 or ip in _IPV4_TRANSLATED:
        return [low32]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return None


def address_block_reason(address: str | IPAddress) -> str | None:
    """Why an address must not be reached without an allowlist entry (e.g. "loopback"), or None if public.

    Pure: no DNS, no network. IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4,
    Teredo) are judged by the IPv4 address they reach.
    """
    ip = _strip_scope(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if ip in METADATA_ADDRESSES:
        return "metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _IPV6_TABLE[0][0] or ip in _IPV6_TABLE[1][0]:
            return "unspecified" if int(ip) == 0 else "loopback"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            for inner in embedded:
                reason = address_block_reason(inner)
                if reason is not None:
                    return reason
            return None
        table = _IPV6_TABLE
    else:
        table = _IPV4_TABLE
    for network, reason in table:
        if ip in network:
            return reason
    # Backstop for special-purpose ranges the tables do not name (Python's registry view).
    return None if ip.is_global else "reserved"


# --- host parsing -----------------------------------------------------------------------------------

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _parse_ipv4_number(part: str) -> int | None:
    if not part:
        return None
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:], 16) if part[2:] else 0
        if len(part) > 1 and part[0] == "0":
            return int(part[1:], 8)
        return int(part, 10)
    except ValueError:
        return None


def parse_ipv4_host(host: str) -> ipaddress.IPv4Address | None:
    """WHATWG URL IPv4 parsing: decimal, octal (0177), hex (0x7f), 1 to 4 parts (127.1, 2130706433).

    Returns None when the host is not numeric (a domain name); raises ValueError when it ends in a number
    but is not a valid IPv4 address (browsers refuse such URLs too).
    """
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if not (last and ((last.isascii() and last.isdigit()) or re.fullmatch(r"0[xX][0-9a-fA-F]*", last))):
        return None
    if len(parts) > 4:
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    numbers = [_parse_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    *head, tail = numbers
    if any(n > 255 for n in head) or tail >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    value = tail
    for index, n in enumerate(head):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


@dataclass(frozen=True)
class Target:
    """One hop's destination: `host` is a normalised name, or None when the URL names an IP."""

    scheme: str
    host: str | None
    ip: IPAddress | None
    port: int
    path: str  # path and query, never the fragment
    userinfo: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host or str(self.ip), self.port)

    @property
    def host_header(self) -> str:
        name = self.host if self.host is not None else ip_literal(self.ip)
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"

    def display(self) -> str:
        """scheme://host[:port] only: userinfo, path and query may all carry secrets (webhook URLs do)."""
        return f"{self.scheme}://{self.host_header}"

    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"


def ip_literal(ip: IPAddress) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        return "[" + str(ip).replace("%", "%25") + "]"
    return str(ip)


def parse_url(url: str) -> Target:
    """Parse and normalise an http(s) URL; raises OutboundError("invalid_url") otherwise."""

    def invalid(why: str) -> OutboundError:
        return OutboundError("invalid_url", f"Invalid URL: {why}.")

    if not isinstance(url, str) or not url:
        raise invalid("empty")
    if len(url) > MAX_URL_LENGTH:
        raise invalid(f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise invalid("it contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise invalid("only http and https are allowed")
    netloc = parts.netloc
    userinfo, _, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            raise invalid("unterminated IPv6 address")
        raw_host, rest = hostport[1:end], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise invalid("garbage after the IPv6 address")
        port_text = rest[1:]
        address, _, zone = unquote(raw_host).partition("%")
        try:
            ip: IPAddress | None = ipaddress.IPv6Address(address)
        except ValueError:
            raise invalid("bad IPv6 address") from None
        if zone:
            if not re.fullmatch(r"[A-Za-z0-9._~-]{1,64}", zone):
                raise invalid("bad IPv6 zone id")
            ip = ipaddress.IPv6Address(f"{address}%{zone}")
        host = None
    else:
        raw_host, _, port_text = hostport.partition(":")
        host = unquote(raw_host)
        if not host:
            raise invalid("no host")
        if not host.isascii():
            try:
                host = idna.encode(host, uts46=True).decode("ascii")
            except (idna.IDNAError, UnicodeError):
                raise invalid("bad internationalised host name") from None
        host = host.lower()
        if host.endswith(".") and host != ".":
            host = host[:-1]
        try:
            ip = parse_ipv4_host(host)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        if ip is not None:
            host = None
        elif not all(_HOST_LABEL.match(label) for label in host.split(".")) or len(host) > 253:
            raise invalid("bad host name")
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise invalid("bad port")
        port = int(port_text)
    else:
        port = 443 if scheme == "https" else 80
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=scheme, host=host, ip=ip, port=port, path=path, userinfo=unquote(userinfo))


# --- policy -------------------------------------------------------------------------------------------


def parse_allowlist_entry(entry: str) -> tuple[str, Any]:
    """("host", name) | ("suffix", ".example.com") | ("network", IPv4Network/IPv6Network); ValueError if bad.

    Syntax: an exact host name (`api.example.com`), a wildcard for every subdomain (`*.example.com`,
    not the apex itself), an IP address (`10.0.0.5`, `fd00::1`, `[fd00::1]`) or a CIDR (`10.0.0.0/8`).
    """
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError("An allowlist entry must be a non-empty string.")
    text = entry.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ("network", ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    if name.endswith("."):
        name = name[:-1]
    try:
        name = idna.encode(name, uts46=True).decode("ascii") if not name.isascii() else name
    except (idna.IDNAError, UnicodeError):
        raise ValueError(f"{entry!r} is not a host name, IP address or CIDR.") from None
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{entry!r} is not a host name, *.domain wildcard, IP address or CIDR.")
    try:
        numeric = parse_ipv4_host(name)
    except ValueError:
        numeric = True
    if numeric is not None:
        raise ValueError(f"{entry!r} is not a valid IP address; write IPs in dotted decimal or CIDR form.")
    return ("suffix", "." + name) if wildcard else ("host", name)


def validate_allowlist(entries: Iterable[str]) -> list[str]:
    """One sentence per invalid entry (empty when all are valid) — for the policy serializer."""
    errors = []
    for entry in entries:
        try:
            parse_allowlist_entry(entry)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


@dataclass(frozen=True)
class OutboundPolicy:
    """The security policy's outbound part: `block_private_networks` and `http_allowlist`."""

    block_private_networks: bool = True
    allowlist: tuple[str, ...] = ()
    _hosts: frozenset[str] = field(init=False, repr=False, compare=False)
    _suffixes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        entries = (self.allowlist,) if isinstance(self.allowlist, str) else tuple(self.allowlist)
        hosts, suffixes, networks = set(), [], []
        for entry in entries:
            kind, value = parse_allowlist_entry(entry)
            {"host": hosts.add, "suffix": suffixes.append, "network": networks.append}[kind](value)
        object.__setattr__(self, "allowlist", entries)
        object.__setattr__(self, "_hosts", frozenset(hosts))
        object.__setattr__(self, "_suffixes", tuple(suffixes))
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def from_security_policy(cls, policy: Mapping[str, Any]) -> OutboundPolicy:
        """From the `/security/policy` document (missing keys take the API's defaults)."""
        return cls(
            block_private_networks=bool(policy.get("block_private_networks", True)),
            allowlist=tuple(policy.get("http_allowlist") or ()),
        )

    def host_allowed(self, host: str | None) -> bool:
        if host is None:
            return False
        return host in self._hosts or any(host.endswith(suffix) for suffix in self._suffixes)

    def address_allowed(self, ip: IPAddress) -> bool:
        candidates = [_strip_scope(ip)]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(c.version == n.version and c in n for c in candidates for n in self._networks)

    def check(self, target: Target, addresses: Iterable[IPAddress]) -> None:
        """Raise OutboundError("ssrf_blocked") unless every address may be reached for this target."""
        host_listed = self.host_allowed(target.host)
        for ip in addresses:
            reason = address_block_reason(ip)
            if reason is None or self.address_allowed(ip):
                continue
            if reason not in ALWAYS_BLOCKED_REASONS and (host_listed or not self.block_private_networks):
                continue
            where = target.host or ip_literal(ip)
            raise OutboundError(
                "ssrf_blocked",
                f"Refused to connect to {where}: {ip} is a {reason.replace('_', '-')} address "
                "(add it to the security policy's http_allowlist to allow it).",
                details={"host": where, "address": str(ip), "reason": reason},
            )
