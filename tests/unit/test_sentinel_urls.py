"""Sentinel URLs: what they parse into, how they are shown, what is refused (one sentence each),
and that neither password ever shows."""

from __future__ import annotations

import re

import pytest
import redis

from session_migration.audit import password_free
from session_migration.endpoints import RedisEndpoint, carries_secret, resolve_connection
from session_migration.errors import InvalidParameter, is_transient

DATA_PW, SENTINEL_PW = "data-secret-31d", "sentinel-secret-77a"


def test_a_sentinel_url_parses_into_the_one_endpoint_class():
    e = RedisEndpoint.from_url(f"redis+sentinel://app:{DATA_PW}@s1:26379,s2,[::1]:26381/sessions/3"
                               f"?sentinel_username=watch&sentinel_password={SENTINEL_PW}")
    assert e.is_sentinel and e.scheme == "redis"
    assert e.sentinels == (("s1", 26379), ("s2", 26379), ("::1", 26381))  # 26379 unless given
    assert (e.master_name, e.db, e.username, e.password) == ("sessions", 3, "app", DATA_PW)
    assert (e.sentinel_username, e.sentinel_password) == ("watch", SENTINEL_PW)
    assert e.display_url == "redis+sentinel://app@s1:26379,s2:26379,[::1]:26381/sessions/3?sentinel_username=watch"
    assert RedisEndpoint.from_url(e.display_url).sentinels == e.sentinels  # the display form reads back

    assert RedisEndpoint.from_url("redis+sentinel://s1/sessions").db == 0
    assert RedisEndpoint.from_url("redis+sentinel://s1/sessions?db=2").db == 2
    valkey = RedisEndpoint.from_url("valkeys+sentinel://s1:5000/m/1?ssl_cert_reqs=none")
    assert valkey.display_url == "rediss+sentinel://s1:5000/m/1?ssl_cert_reqs=none"
    assert not RedisEndpoint.from_url("redis://h:6379/0").is_sentinel


def test_identity_and_same_server_are_the_sentinel_form_whatever_the_order_or_credentials():
    a = RedisEndpoint.from_url(f"redis+sentinel://app:{DATA_PW}@s1:1,s2:2/sessions/0?sentinel_username=x")
    b = RedisEndpoint.from_url("redis+sentinel://s2:2,s1:1/sessions/0?sentinel_password_env=SESSION_MIGRATION_S")
    assert a.identity == b.identity == "redis+sentinel://s1:1,s2:2/sessions/0"
    assert a.same_server(b)
    assert a.same_server(RedisEndpoint.from_url("redis+sentinel://s2:2,s9:9/sessions/0"))  # one sentinel in common
    assert not a.same_server(RedisEndpoint.from_url("redis+sentinel://s1:1/sessions/1"))
    assert not a.same_server(RedisEndpoint.from_url("redis+sentinel://s1:1/other/0"))
    assert not a.same_server(RedisEndpoint.from_url("redis://s1:1/0"))


@pytest.mark.parametrize("url, says", [
    ("redis+sentinel://s1:26379", "names no master"),
    ("redis+sentinel://s1:26379/", "names no master"),
    ("redis+sentinel://s1/ma ster", "names no master"),
    ("redis+sentinel://s1/m/0/extra", "names no master"),
    ("redis+sentinel://s1:26379,,s2/m", "Bad sentinel address ''"),
    ("redis+sentinel://s1:99999/m", "Bad sentinel address 's1:99999'"),
    ("redis+sentinel://s1:port/m", "Bad sentinel address 's1:port'"),
    ("redis+sentinel://s1/m/100001", "out of range"),
    ("redis+sentinel://s1/m/x", "not a number"),
    ("redis+sentinel://s1/m?sentinel_pasword=x", "Unknown URL option(s) sentinel_pasword"),
    ("redis+sentinel://s1/m?ssl_certfile=/c.pem", "TLS options need a rediss"),
    ("redis://h/0?sentinel_username=x", "Sentinel options (sentinel_username) need a redis+sentinel"),
    ("redis+sentinel://s1/m?sentinel_password_env=A%3DB", "not an environment variable name"),
    ("redis+sentinel://" + ",".join(f"s{i}:1" for i in range(17)) + "/m", "at most 16"),
])
def test_a_bad_sentinel_url_gets_one_clear_sentence(url, says):
    with pytest.raises(InvalidParameter) as info:
        RedisEndpoint.from_url(url)
    text = str(info.value)
    assert says in text and text.count(". ") <= 1 and "\n" not in text


def test_neither_password_is_shown_anywhere():
    url = f"redis+sentinel://app:{DATA_PW}@s1:1,s2:2/sessions/0?sentinel_password={SENTINEL_PW}"
    e = RedisEndpoint.from_url(url)
    assert e.has_inline_password and e.has_inline_secret and carries_secret(url)
    for shown in (e.display_url, e.identity, e.parameter_url, repr(e), password_free(url)):
        assert DATA_PW not in shown and SENTINEL_PW not in shown, shown
    for bad in (url.replace("s2:2", "s2:99999"), url.replace("/sessions/0", "/sessions/x"), url + "&oops=1"):
        with pytest.raises(InvalidParameter) as info:
            RedisEndpoint.from_url(bad)
        assert DATA_PW not in str(info.value) and SENTINEL_PW not in str(info.value)

    moved = e.without_password("SESSION_MIGRATION_SOURCE_PASSWORD",
                               sentinel_password_env="SESSION_MIGRATION_SOURCE_SENTINEL_PASSWORD")
    assert not moved.has_inline_secret and not carries_secret(moved.parameter_url)
    assert moved.parameter_url.endswith("/sessions/0?password_env=SESSION_MIGRATION_SOURCE_PASSWORD"
                                        "&sentinel_password_env=SESSION_MIGRATION_SOURCE_SENTINEL_PASSWORD")
    assert "password_env" not in moved.display_url  # where a password comes from is the parameter's business
    assert RedisEndpoint.from_url(moved.parameter_url) == moved


def test_only_references_do_not_carry_a_secret():
    assert carries_secret("redis+sentinel://:pw@s1:1,s2:2/m")
    assert carries_secret("redis+sentinel://s1:1/m?sentinel_password=")
    assert not carries_secret("redis+sentinel://app@s1:1,s2:2/m?sentinel_username=u&sentinel_password_env=SESSION_MIGRATION_X")


def test_the_flow_parameter_pattern_refuses_a_sentinel_password():
    from flows._edge import _NO_SECRET

    pattern = re.compile(_NO_SECRET)
    assert not pattern.match(f"redis+sentinel://s1:1/m/0?sentinel_password={SENTINEL_PW}")
    assert not pattern.match(f"redis+sentinel://:{DATA_PW}@s1:1,s2:2/m/0")
    assert pattern.match("redis+sentinel://app@s1:1,s2:2/m/0?sentinel_password_env=SESSION_MIGRATION_X")


def test_the_cli_moves_both_passwords_to_its_environment_and_masks_them(monkeypatch):
    import sys

    from session_migration_cli.run import hand_to_flow, masked_command

    url = f"redis+sentinel://app:{DATA_PW}@s1:1/m/0?sentinel_password={SENTINEL_PW}"
    moved = hand_to_flow({"source": url})["source"]
    assert DATA_PW not in moved and SENTINEL_PW not in moved and not carries_secret(moved)
    import os

    assert os.environ.pop("SESSION_MIGRATION_SOURCE_PASSWORD") == DATA_PW
    assert os.environ.pop("SESSION_MIGRATION_SOURCE_SENTINEL_PASSWORD") == SENTINEL_PW
    monkeypatch.setattr(sys, "argv", ["session-migration", "backup", url])
    printed = masked_command()
    assert DATA_PW not in printed and SENTINEL_PW not in printed and "sentinel_password=****" in printed


def test_a_sentinel_password_variable_follows_the_allow_list():
    endpoint = RedisEndpoint.from_url("redis+sentinel://127.0.0.1:1/m/0?sentinel_password_env=HOME")
    with pytest.raises(InvalidParameter, match="does not allow"):
        endpoint.connect(check=False)  # refused before the variable is read or anything is sent


def test_a_scheme_typo_names_the_sentinel_scheme():
    with pytest.raises(InvalidParameter, match=r"did you mean redis\+sentinel://"):
        resolve_connection("redis+sentinel:/s1:1/m")


@pytest.mark.parametrize("reply, transient", [
    ("READONLY You can't write against a read only replica.", True),
    ("LOADING Redis is loading the dataset in memory", True),
    ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", True),
    ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
    ("ERR unknown command", False),
])
def test_the_errors_a_failover_causes_are_transient(reply, transient):
    assert is_transient(redis.exceptions.ResponseError(reply)) is transient


def test_tls_behind_sentinel_reaches_the_sentinels_and_the_master_with_the_same_verification():
    from session_migration.endpoints import _MasterSSLConnection

    client = RedisEndpoint.from_url("rediss+sentinel://s1:26379,s2:26380/m/0?ssl_ca_certs=/etc/ca.pem").connect(check=False)
    pool = client.connection_pool
    assert pool.connection_class is _MasterSSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"], kwargs["ssl_ca_certs"]) == ("required", True, "/etc/ca.pem")
    for _where, sentinel in pool.sentinel_manager.clients:
        settings = sentinel.connection_pool.connection_kwargs
        assert (settings["ssl_cert_reqs"], settings["ssl_check_hostname"], settings["ssl_ca_certs"]) == (
            "required", True, "/etc/ca.pem")
    plain = RedisEndpoint.from_url("redis+sentinel://s1/m/0").connect(check=False).connection_pool
    assert plain.connection_class.__name__ == "_MasterConnection"
    assert all("ssl_cert_reqs" not in c.connection_pool.connection_kwargs for _w, c in plain.sentinel_manager.clients)
