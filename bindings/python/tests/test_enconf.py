"""The package `enconf` as a panel uses it, from the installed wheel.

Run by `tests/wheel.rs`, which builds the wheel, installs it in a fresh venv and sets:
ENCONF_CASES (the shared table with the Rust rules' answers, JSON), ENCONF_CERT_DIR (a
self-signed certificate for shop.example and one for other.example), ENCONF_URL and
ENCONF_ADMIN_TOKEN (a running controller), AGENT_URL and AGENT_TOKEN (its agent).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import threading

import pytest

import enconf

VALIDATORS = {
    "d": enconf.validate_domain,
    "u": enconf.validate_username,
    "m": enconf.validate_mail_address,
    "s": enconf.validate_server_input,
    "a": enconf.validate_account_input,
}


def _cases() -> list[dict]:
    with open(os.environ["ENCONF_CASES"], encoding="utf-8") as f:
        return json.load(f)


CASES = _cases()


def _id(case: dict) -> str:
    return f"{case['kind']}:{bytes.fromhex(case['input_hex'])!r}"[:60]


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_each_case_of_the_shared_table_answers_as_the_rust_rules_do(case: dict) -> None:
    raw = bytes.fromhex(case["input_hex"])
    validate = VALIDATORS[case["kind"]]
    status = case["status"]
    if status == 3:
        # Not UTF-8: Python cannot hold it in a str except with lone surrogates, which never
        # reach the library.
        with pytest.raises(UnicodeEncodeError):
            validate(raw.decode("utf-8", errors="surrogateescape"))
        return
    text = raw.decode("utf-8")
    if status == 0:
        assert validate(text) is None
    elif status == 1:
        with pytest.raises(enconf.ValidationError) as info:
            validate(text)
        assert info.value.code == "invalid"
        assert info.value.field == case["field"]
        assert info.value.message == case["message"]
        assert str(info.value) == case["message"]
        assert info.value.http_status == 0
    else:
        assert status == 2, case
        with pytest.raises(enconf.BadRequestError) as info:
            validate(text)
        assert info.value.code == "bad_request"
        assert info.value.field is None


def test_the_table_covers_every_kind_and_every_outcome() -> None:
    assert {c["kind"] for c in CASES} == set(VALIDATORS)
    assert {c["status"] for c in CASES} == {0, 1, 2, 3}


def test_every_refusal_is_an_enconf_error() -> None:
    for cls in (
        enconf.ValidationError,
        enconf.BadRequestError,
        enconf.RefusedError,
        enconf.UnreachableError,
        enconf.InterruptedRequestError,
        enconf.ProtocolError,
    ):
        assert issubclass(cls, enconf.EnconfError)
        assert cls.__module__ == "enconf"
    with pytest.raises(enconf.EnconfError):
        enconf.validate_username("root")


def test_a_mapping_is_checked_as_its_json() -> None:
    with pytest.raises(enconf.ValidationError) as info:
        enconf.validate_account_input({"username": "shop", "domains": ["shop.example", "a b"]})
    assert info.value.field == "domains[1]"
    with pytest.raises(TypeError):
        enconf.validate_account_input(["shop"])  # type: ignore[arg-type]


def test_the_package_is_typed_and_documented() -> None:
    package = pathlib.Path(enconf.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_enconf.pyi").is_file()
    assert enconf.__version__ == enconf._enconf.version()
    for name in enconf.__all__:
        value = getattr(enconf, name)
        if callable(value):
            assert value.__doc__, name


def _pem(name: str) -> str:
    return (pathlib.Path(os.environ["ENCONF_CERT_DIR"]) / name).read_text()


def test_a_certificate_is_checked_as_the_controller_checks_an_upload() -> None:
    chain, key = _pem("shop.crt"), _pem("shop.key")
    cert = enconf.check_certificate(chain, key, "www.shop.example")
    assert isinstance(cert, enconf.Certificate)
    assert cert.subject_names == ["shop.example", "www.shop.example"]
    assert cert.not_before < cert.not_after
    with pytest.raises(enconf.ValidationError) as info:
        enconf.check_certificate(chain, key, "blog.example")
    assert info.value.field == "certificate_pem"
    with pytest.raises(enconf.ValidationError) as info:
        enconf.check_certificate(chain, _pem("other.key"), "shop.example")
    assert info.value.field == "private_key_pem"
    with pytest.raises(enconf.ValidationError) as info:
        enconf.check_certificate(chain, key, "shop.example\nserver_name evil")
    assert info.value.field == "domain"


def test_the_web_preview_is_what_the_agent_writes() -> None:
    text = enconf.render_web({"username": "shop", "domains": ["shop.example", "www.shop.example"]})
    assert "# /etc/nginx/sites-enabled/enconf-shop.conf\n" in text
    assert "server_name shop.example www.shop.example;" in text
    assert "[shop]" in text
    moved = enconf.render_web({"username": "shop", "domains": ["shop.example"]}, "AGENT_WEB_ROOT_BASE=/srv/www\n")
    assert "root /srv/www/shop/public;" in moved
    with pytest.raises(enconf.ValidationError) as info:
        enconf.render_web({"username": "shop", "domains": ["shop.example"]}, "AGENT_WEB_ROOT_BASE=relative\n")
    assert info.value.field == "settings"
    with pytest.raises(enconf.ValidationError) as info:
        enconf.render_web({"username": "shop", "domains": ["shop.example;"]})
    assert info.value.field == "domains[0]"


@pytest.fixture(scope="module")
def client() -> enconf.Client:
    return enconf.Client(os.environ["ENCONF_URL"], os.environ["ENCONF_ADMIN_TOKEN"], timeout=10)


@pytest.fixture(scope="module")
def server(client: enconf.Client) -> enconf.Server:
    return client.create_server(
        {
            "name": "web1",
            "hostname": "web1.example",
            "agent_url": os.environ["AGENT_URL"],
            "agent_token": os.environ["AGENT_TOKEN"],
            "roles": ["web", "mail", "dns", "db"],
        }
    )


def test_a_server_is_created_through_the_controller(client: enconf.Client, server: enconf.Server) -> None:
    assert isinstance(server, enconf.Server)
    assert (server.name, server.hostname, server.agent_url) == ("web1", "web1.example", os.environ["AGENT_URL"])
    assert server.reachable and server.active
    assert "agent_token" not in {f.name for f in dataclasses.fields(server)}
    assert client.server(server.id) == server
    page = client.servers()
    assert [s.id for s in page.items] == [server.id] and page.next is None


def test_the_controllers_refusals_are_typed(client: enconf.Client, server: enconf.Server) -> None:
    again = {
        "name": "web1",
        "hostname": "web1.example",
        "agent_url": os.environ["AGENT_URL"],
        "agent_token": os.environ["AGENT_TOKEN"],
        "roles": ["web"],
    }
    with pytest.raises(enconf.RefusedError) as info:
        client.create_server(again)
    assert (info.value.code, info.value.http_status, info.value.field) == ("duplicate", 409, "name")
    with pytest.raises(enconf.RefusedError) as info:
        client.server(999_999)
    assert (info.value.code, info.value.http_status) == ("not_found", 404)
    with pytest.raises(enconf.ValidationError) as info:
        client.create_server({**again, "name": "web2", "agent_url": "ftp://web2.example"})
    assert info.value.field == "agent_url"
    with pytest.raises(enconf.ValidationError) as info:
        client.create_server({"name": "web2"})
    assert info.value.field == "hostname"
    with pytest.raises(enconf.BadRequestError) as info:
        client.create_server({**again, "name": 2})
    assert info.value.field is None
    stranger = enconf.Client(os.environ["ENCONF_URL"], "not-the-admin-token-0123456789")
    with pytest.raises(enconf.RefusedError) as info:
        stranger.servers()
    assert (info.value.code, info.value.http_status) == ("unauthorized", 401)
    for limit in (0, -1, 1001):
        with pytest.raises(enconf.ValidationError) as info:
            client.servers(limit=limit)
        assert info.value.field == "limit"
    with pytest.raises(enconf.ValidationError) as info:
        client.accounts(server_id=-1)
    assert info.value.field == "server_id"
    nobody = enconf.Client("http://127.0.0.1:9", "whatever-token-0123456789", timeout=2)
    with pytest.raises(enconf.UnreachableError) as info:
        nobody.servers()
    assert info.value.http_status == 0
    with pytest.raises(enconf.ValidationError) as info:
        enconf.Client(os.environ["ENCONF_URL"], "t" * 30, timeout=0)
    assert info.value.field == "timeout"


def test_accounts_are_placed_listed_and_paged(client: enconf.Client, server: enconf.Server) -> None:
    made = [
        client.create_account({"username": name, "domains": [f"{name}.example"], "roles": ["web"]})
        for name in ("pyshop", "pyblog", "pywiki")
    ]
    for account in made:
        assert isinstance(account, enconf.Account)
        assert account.server_id == server.id
        assert account.status == "active"
        assert client.account(account.id) == account
    first = client.accounts(limit=2, q="py")
    assert [a.username for a in first.items] == ["pyshop", "pyblog"] and first.next
    rest = client.accounts(limit=2, q="py", after=first.next)
    assert [a.username for a in rest.items] == ["pywiki"] and rest.next is None
    assert [a.username for a in client.accounts(q="pyw", role="web", server_id=server.id).items] == ["pywiki"]
    with pytest.raises(enconf.RefusedError) as info:
        client.create_account({"username": "pyshop", "domains": ["other.example"], "roles": ["web"]})
    assert (info.value.code, info.value.field) == ("duplicate", "username")


def test_one_client_serves_several_threads(client: enconf.Client, server: enconf.Server) -> None:
    seen: list[int] = []

    def ask() -> None:
        for _ in range(5):
            seen.append(client.server(server.id).id)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [server.id] * 20
