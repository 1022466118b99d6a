"""The request path's Redis call: one round trip on the thread's own connection, self-healing."""

from __future__ import annotations

import threading

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core.redis import redis_client, redis_evalsha

ECHO = "return {KEYS[1], ARGV[1]}"


def test_a_script_runs_and_survives_a_script_flush(redis_clean):
    script = redis_client().register_script(ECHO)
    assert redis_evalsha(script=script, keys=["k"], args=["1"]) == [b"k", b"1"]
    redis_clean.script_flush()  # what a restarted Redis forgets
    assert redis_evalsha(script=script, keys=["k"], args=["2"]) == [b"k", b"2"]


def _kill_this_threads_connection(redis_clean) -> None:
    """``CLIENT KILL`` of this thread's connection only: other test workers share the server."""
    from core import redis as gateway_redis

    conn = gateway_redis._local.connection
    conn.send_command("CLIENT", "ID")
    redis_clean.client_kill_filter(_id=conn.read_response())


def test_a_connection_killed_while_busy_fails_one_call_then_reconnects(redis_clean, monkeypatch):
    from core import redis as gateway_redis

    monkeypatch.setattr(gateway_redis, "IDLE_CHECK_SECONDS", 3600.0)  # no idle poll: the kill lands mid-use
    script = redis_client().register_script(ECHO)
    redis_evalsha(script=script, keys=["k"], args=["1"])
    _kill_this_threads_connection(redis_clean)
    with pytest.raises(RedisConnectionError):
        redis_evalsha(script=script, keys=["k"], args=["2"])
    assert redis_evalsha(script=script, keys=["k"], args=["3"]) == [b"k", b"3"]


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_call(redis_clean, monkeypatch):
    from core import redis as gateway_redis

    monkeypatch.setattr(gateway_redis, "IDLE_CHECK_SECONDS", 0.0)
    script = redis_client().register_script(ECHO)
    redis_evalsha(script=script, keys=["k"], args=["1"])
    before = gateway_redis._local.connection._sock
    _kill_this_threads_connection(redis_clean)
    assert redis_evalsha(script=script, keys=["k"], args=["2"]) == [b"k", b"2"]  # no failed call
    assert gateway_redis._local.connection._sock is not before


def test_each_thread_uses_its_own_connection(redis_clean):
    from core import redis as gateway_redis

    script = redis_client().register_script(ECHO)
    connections: list[object] = []

    def call() -> None:
        redis_evalsha(script=script, keys=["k"], args=["1"])
        connections.append(gateway_redis._local.connection)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    call()
    call()
    assert len({id(c) for c in connections[:3]}) == 3  # three threads, three connections
    assert connections[3] is connections[4]  # one thread keeps its connection
