"""enconf from Python: the rules enconf's API applies, its certificate check, a preview of an
account's web configuration, and a blocking client of a controller's Management API.

Every refusal raises an :class:`EnconfError` (``code``, ``field``, ``http_status``):
:class:`ValidationError` for a field that breaks a rule, :class:`BadRequestError` for input
of the wrong shape, :class:`RefusedError` for the controller's other refusals,
:class:`UnreachableError`, :class:`InterruptedRequestError` and :class:`ProtocolError` for
the network.

>>> import enconf
>>> enconf.validate_domain("shop.example")
>>> try:
...     enconf.validate_domain("shop.example;include /etc/passwd")
... except enconf.ValidationError as e:
...     print(e.field)
domain
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Generic, List, Mapping, Optional, Type, TypeVar, Union, cast

from . import _enconf
from ._enconf import (
    BadRequestError,
    EnconfError,
    InterruptedRequestError,
    ProtocolError,
    RefusedError,
    UnreachableError,
    ValidationError,
)

__all__ = [
    "Account",
    "BadRequestError",
    "Certificate",
    "Client",
    "EnconfError",
    "InterruptedRequestError",
    "Page",
    "ProtocolError",
    "RefusedError",
    "Server",
    "UnreachableError",
    "ValidationError",
    "__version__",
    "check_certificate",
    "render_web",
    "validate_account_input",
    "validate_domain",
    "validate_mail_address",
    "validate_server_input",
    "validate_username",
]

__version__: str = _enconf.version()

Json = Union[str, Mapping[str, Any]]
"""A request body: a mapping (turned into JSON) or JSON text."""


def _text(body: Json) -> str:
    if isinstance(body, str):
        return body
    if not isinstance(body, Mapping):
        raise TypeError(f"expected a mapping or JSON text, not {type(body).__name__}")
    return json.dumps(body)


_D = TypeVar("_D")


def _build(cls: Type[_D], data: Mapping[str, Any]) -> _D:
    """A dataclass from an answer; fields a newer controller adds are ignored."""
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class Server:
    """A server as the controller shows it (never with its agent token)."""

    id: int
    name: str
    hostname: str
    agent_url: str
    roles: List[str]
    active: bool
    reachable: bool
    update_available: bool
    accounts: int
    mail_hostname: Optional[str] = None
    max_accounts: Optional[int] = None
    panel_url: Optional[str] = None
    phpmyadmin_path: Optional[str] = None
    roundcube_path: Optional[str] = None
    agent_version: Optional[str] = None
    last_seen: Optional[str] = None
    """When the agent last answered, RFC 3339."""
    last_error: Optional[str] = None
    ipv4: Optional[str] = None
    ipv6: Optional[str] = None
    warning: Optional[str] = None
    """Set for an agent reached over plain HTTP across the network."""


@dataclasses.dataclass(frozen=True)
class Account:
    """A hosting account: its domains, roles and where each role is served."""

    id: int
    username: str
    domains: List[str]
    roles: List[str]
    servers: Mapping[str, Any]
    """One server id per role; a list of ids for ``dns``."""
    php: Mapping[str, Any]
    status: str
    created_at: str
    """RFC 3339."""
    php_version: Optional[str] = None
    server_id: Optional[int] = None
    """The web role's server (None without a web role)."""


T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; pass ``next`` as ``after`` for the next page (None: the last)."""

    items: List[T]
    next: Optional[str]


@dataclasses.dataclass(frozen=True)
class Certificate:
    """The leaf certificate of a chain that passed :func:`check_certificate`."""

    subject_names: List[str]
    issuer: str
    not_before: str
    """RFC 3339."""
    not_after: str
    """RFC 3339."""


def validate_domain(domain: str) -> None:
    """Checks a domain name as the API does; :class:`ValidationError` (field ``domain``)."""
    _enconf.validate_domain(domain)


def validate_username(username: str) -> None:
    """Checks an account's user name; :class:`ValidationError` (field ``username``)."""
    _enconf.validate_username(username)


def validate_mail_address(address: str) -> None:
    """Checks a mailbox address; :class:`ValidationError` (field ``address``)."""
    _enconf.validate_mail_address(address)


def validate_server_input(server: Json) -> None:
    """Checks the body of ``POST /api/v1/servers`` as the controller will."""
    _enconf.validate_server_input(_text(server))


def validate_account_input(account: Json) -> None:
    """Checks the body of ``POST /api/v1/accounts`` as the controller will."""
    _enconf.validate_account_input(_text(account))


def check_certificate(chain_pem: str, key_pem: str, domain: str) -> Certificate:
    """Checks an uploaded certificate chain and private key (PEM) for ``domain``, now, as the
    controller does: both parse, the key belongs to the first certificate, which is valid now
    and covers ``domain``, and each certificate is issued by the next. A refusal names
    ``certificate_pem``, ``private_key_pem`` or ``domain``."""
    return _build(Certificate, json.loads(_enconf.check_certificate(chain_pem, key_pem, domain)))


def render_web(account: Json, settings: str = "") -> str:
    """What the agent would write for the account's web role: the nginx server block and the
    PHP-FPM pool, each after a ``# <path>`` line. ``settings`` is the text of the server's
    agent ``config.env`` (empty: the Debian defaults)."""
    return _enconf.render_web(_text(account), settings)


class Client:
    """A blocking client of a controller's Management API, with an administrator token.

    Nothing is sent until the first call. The GIL is released while a call waits; one client
    may be shared between threads.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        ca_file: Optional[str] = None,
        timeout: float = 30.0,
    ) -> None:
        """``url``: the controller (``http://`` or ``https://``); ``ca_file``: PEM CA
        certificates to trust besides the system's; ``timeout``: seconds a call may take."""
        self._native = _enconf.Client(url, token, ca_file, timeout)

    def create_server(self, server: Json) -> Server:
        """Adds a server (the body of ``POST /api/v1/servers``)."""
        return _build(Server, json.loads(self._native.create_server(_text(server))))

    def server(self, id: int) -> Server:
        """One server; :class:`RefusedError` with code ``not_found`` when there is none."""
        return _build(Server, json.loads(self._native.server(id)))

    def servers(self, *, limit: Optional[int] = None, after: Optional[str] = None) -> Page[Server]:
        """One page of servers, by id."""
        page = json.loads(self._native.servers(limit, after))
        return Page([_build(Server, s) for s in page["items"]], page["next"])

    def create_account(self, account: Json) -> Account:
        """Creates an account (the body of ``POST /api/v1/accounts``); the controller places
        and applies it before answering."""
        return _build(Account, json.loads(self._native.create_account(_text(account))))

    def account(self, id: int) -> Account:
        """One account; :class:`RefusedError` with code ``not_found`` when there is none."""
        return _build(Account, json.loads(self._native.account(id)))

    def accounts(
        self,
        *,
        limit: Optional[int] = None,
        after: Optional[str] = None,
        server_id: Optional[int] = None,
        role: Optional[str] = None,
        q: Optional[str] = None,
    ) -> Page[Account]:
        """One page of accounts, filtered by server, role or a user name or domain prefix."""
        page = json.loads(self._native.accounts(limit, after, server_id, role, q))
        return Page([_build(Account, a) for a in page["items"]], page["next"])
