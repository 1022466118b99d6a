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


def test_a_killed_connection_fails_one_call_then_reconnects(redis_clean):
    script = redis_client().register_script(ECHO)
    redis_evalsha(script=script, keys=["k"], args=["1"])
    redis_clean.client_kill_filter(skipme=True, _type="normal")  # every other client: ours included
    with pytest.raises(RedisConnectionError):
        redis_evalsha(script=script, keys=["k"], args=["2"])
    assert redis_evalsha(script=script, keys=["k"], args=["3"]) == [b"k", b"3"]


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
