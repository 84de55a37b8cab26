"""qsess on a real Redis Cluster through redis-py's `RedisCluster`, the client the black-box tests use:
the issue's reproduction, the typed client, and the refusals that say what to do instead.

Three primaries with the module, started by the benchmarks' launcher (qsess_bench.servers.RedisCluster),
once for this module's tests.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest
from redis.cluster import RedisCluster as RedisPyCluster
from redis.exceptions import ResponseError
from servers import key_slot, start_redis_cluster

from qsess import QsessClient
from qsess.errors import QsessError


@pytest.fixture(scope="module")
def cluster():
    module = os.environ.get("QSESS_MODULE_PATH")
    if not module:
        raise RuntimeError("set QSESS_MODULE_PATH to the qsess module (libqsess.so)")
    nodes = start_redis_cluster(module, Path(tempfile.mkdtemp(prefix="qsess-py-cluster-")))
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def rc(cluster) -> RedisPyCluster:
    client = RedisPyCluster(host="127.0.0.1", port=cluster.ports[0])
    yield client
    client.close()


def test_the_issue_reproduction_through_redis_py_cluster(rc, cluster):
    sid = rc.execute_command("QSESS.NEW", "USER", "42", "DATA", "x")
    assert key_slot(sid) == key_slot("42")
    record = rc.execute_command("QSESS.GET", sid)
    assert record, "the minted id is readable"
    handles = rc.execute_command("QSESS.BYUSER", "42")
    assert len(handles) == 1
    # The data is on the node that serves the uid's slot, and nowhere else.
    slot = key_slot("42")
    owner = next(port for port, ranges in cluster.slots().items() if any(a <= slot <= b for a, b in ranges))
    for port in cluster.ports:
        keys = cluster.node(port).call("KEYS", "qs:*")
        assert bool(keys) == (port == owner), (port, keys)


def test_the_typed_client_works_over_a_cluster_connection(rc):
    client = QsessClient(rc)
    sid = client.new(user="alice", data=b"payload", ip="203.0.113.7", ua="curl/8.0")
    assert client.get(sid).data == b"payload"
    assert client.peek(sid).user == "alice"
    assert client.touch(sid)
    other = client.new(user="alice")
    assert sorted(client.by_user("alice")) == sorted([client.peek(sid).handle, client.peek(other).handle])
    assert client.revoke_user("alice", except_sid=sid) == 1
    assert client.get(other) is None
    assert client.set("app-chosen-cookie-0001", data=b"anon") == 1
    assert client.delete("app-chosen-cookie-0001") == 1
    assert client.delete(sid) == 1


def test_logging_in_is_new_user_then_del_and_the_shortcut_says_so(rc):
    client = QsessClient(rc)
    anonymous = "anonymous-cookie-0002"
    uid = next(f"member-{n}" for n in range(1000) if key_slot(f"member-{n}") != key_slot(anonymous))
    client.set(anonymous, data=b"cart")
    with pytest.raises(QsessError, match=r"QSESS\.NEW USER"):
        client.set(anonymous, user=uid)
    logged_in = client.new(user=uid, data=client.get(anonymous).data)
    assert client.delete(anonymous) == 1
    assert client.by_user(uid) == [client.peek(logged_in).handle]


def test_an_anonymous_new_goes_to_the_primary_it_is_sent_to(rc):
    primary = random.choice(rc.get_primaries())
    sid = rc.execute_command("QSESS.NEW", "ANON", target_nodes=primary)
    assert rc.execute_command("QSESS.PEEK", sid) is not None
    with pytest.raises(ResponseError, match="one hash slot per call"):
        first, second = "cookie-on-one-slot-0001", "cookie-on-another-slot-0002"
        assert key_slot(first) != key_slot(second)
        rc.execute_command("QSESS.DEL", first, second)


def test_django_logs_a_user_in_on_a_cluster_with_a_new_id_in_the_user_slot(cluster, monkeypatch):
    from django.contrib.auth import SESSION_KEY

    from qsess.django import conf
    from qsess.django.backend import SessionStore

    monkeypatch.setenv("QSESS_REDIS_URL", f"redis://127.0.0.1:{cluster.ports[0]}/0")
    monkeypatch.setenv("QSESS_REDIS_CLUSTER", "1")
    conf.reset_clients()
    try:
        session = SessionStore(ip="203.0.113.9", user_agent="curl/8.0")
        session["cart"] = ["book"]
        session.save()
        anonymous = session.session_key
        # django.contrib.auth.login: a new key, then the user's id in the session, then the save
        # at the end of the response.
        session.cycle_key()
        session[SESSION_KEY] = "7"
        session.save()
        logged_in = session.session_key
        assert key_slot(logged_in) == key_slot("7"), logged_in
        client = conf.client()
        assert client.get(anonymous) is None
        assert client.by_user("7") == [client.peek(logged_in).handle]
        assert SessionStore(logged_in).load()["cart"] == ["book"]
    finally:
        # Cached clients are per URL; monkeypatch puts the standalone URL back after the test.
        conf.reset_clients()
