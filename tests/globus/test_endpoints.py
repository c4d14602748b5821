from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxystore.exceptions import ConfigurationError
from proxystore.globus.endpoints import (
    HOSTNAME_ENV,
    GlobusEndpoint,
    GlobusEndpoints,
    current_hostname,
)

UUID_A = "0b9b3c4e-1a1a-4a4a-8a8a-000000000001"
UUID_B = "0b9b3c4e-1a1a-4a4a-8a8a-000000000002"


def endpoint(
    uuid: str = UUID_A, regex: str = "host-a", **fields: str
) -> GlobusEndpoint:
    values = {"endpoint_path": "/~/ps", "local_path": "/tmp/ps", "host_regex": regex}
    values.update(fields)
    return GlobusEndpoint(uuid=uuid, **values)


def test_endpoint_canonicalizes_uuid_and_round_trips() -> None:
    ep = endpoint(UUID_A.upper())
    assert ep.uuid == UUID_A
    again = GlobusEndpoints.from_dict({ep.uuid: ep.to_dict()})
    assert list(again) == [ep]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"uuid": "../not-a-uuid"}, "not a UUID"),
        ({"uuid": "a" * 65}, "not a UUID"),
        ({"uuid": ""}, "uuid must be a non-empty string"),
        ({"endpoint_path": ""}, "endpoint_path must be a non-empty string"),
        ({"host_regex": "("}, "not a valid regular expression"),
    ],
)
def test_endpoint_rejects_bad_fields(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "uuid": UUID_A,
        "endpoint_path": "/~/ps",
        "local_path": "/tmp/ps",
        "host_regex": ".*",
    }
    values.update(fields)
    with pytest.raises(ConfigurationError, match=message):
        GlobusEndpoint(**values)  # type: ignore[arg-type]


def test_host_regex_must_match_whole_hostname() -> None:
    ep = endpoint(regex=r"login\d+")
    assert ep.matches("login12")
    assert not ep.matches("login12.example.org")
    assert not ep.matches("xlogin1")


def test_local_picks_first_matching_endpoint() -> None:
    eps = GlobusEndpoints([endpoint(UUID_A, "host-a"), endpoint(UUID_B, "host-.*")])
    assert eps.local("host-a").uuid == UUID_A
    assert eps.local("host-b").uuid == UUID_B


def test_no_match_lists_every_pattern() -> None:
    eps = GlobusEndpoints([endpoint(UUID_A, "host-a"), endpoint(UUID_B, "host-b")])
    with pytest.raises(ConfigurationError) as info:
        eps.local("elsewhere")
    message = str(info.value)
    assert "'elsewhere'" in message
    assert "'host-a'" in message
    assert "'host-b'" in message
    assert HOSTNAME_ENV in message


def test_hostname_env_overrides_gethostname(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = GlobusEndpoints([endpoint(UUID_A, "host-a"), endpoint(UUID_B, "host-b")])
    monkeypatch.setenv(HOSTNAME_ENV, "host-b")
    assert current_hostname() == "host-b"
    assert eps.local().uuid == UUID_B


def test_collection_validation() -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        GlobusEndpoints([])
    with pytest.raises(ConfigurationError, match="more than once"):
        GlobusEndpoints([endpoint(UUID_A), endpoint(UUID_A.upper())])
    with pytest.raises(ConfigurationError, match="expected a GlobusEndpoint"):
        GlobusEndpoints([{"uuid": UUID_A}])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a mapping"),
        ({UUID_A: "x"}, "expected a mapping"),
        ({UUID_A: {"endpoint_path": "/p", "local_path": "/l"}}, "missing host_regex"),
        (
            {
                UUID_A: {
                    "endpoint_path": "/p",
                    "local_path": "/l",
                    "host_regex": "h",
                    "x": 1,
                }
            },
            "unknown x",
        ),
    ],
)
def test_from_dict_rejects_bad_shapes(data: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        GlobusEndpoints.from_dict(data)  # type: ignore[arg-type]


def test_from_json(tmp_path: Path) -> None:
    eps = GlobusEndpoints([endpoint(UUID_A, "host-a"), endpoint(UUID_B, "host-b")])
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(eps.to_dict()))
    assert GlobusEndpoints.from_json(path) == eps

    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        GlobusEndpoints.from_json(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        GlobusEndpoints.from_json(tmp_path / "missing.json")
