"""Adaptive compression: traffic that does not shrink (encrypted, already
compressed) is sent stored instead of paying the codec for nothing; traffic
that compresses keeps being compressed. Either way the output is identical."""
import os
import random

import pytest

from conftest import assert_records_equal, parse_kv, pcaplib

# Many batches from a small file, sealed slowly enough (paced replay) that
# each compression result is known before the next batch is sealed.
BLOCK = {"PACKETSTREAMER_COMPRESS_BLOCK_SIZE": "64", "PACKETSTREAMER_SENSOR_READ_PACKETS_PER_SEC": "20000"}


def capture(env, name, payload):
    rnd = random.Random(7)
    recs, ts = [], 1_700_000_000_000_000_123
    for i in range(6000):
        data = payload(rnd, i)
        ts += 1000 + i
        recs.append(pcaplib.Record(0, ts, len(data), len(data), data))
    path = env.workdir / name
    pcaplib.write_records(str(path), recs, "pcap-ns")
    return path, pcaplib.read(str(path))[1]


@pytest.mark.parametrize("codec", ["lz4", "zlib"])
def test_incompressible_batches_go_stored(env, codec):
    path, expected = capture(env, "random.pcap", lambda r, i: os.urandom(600))
    rx = env.receiver()
    rc, err = env.run_sensor(path, rx.port, codec=codec, sensor_id="enc", env=BLOCK)
    assert rc == 0, err
    kv = parse_kv(err)
    batches, stored = int(kv["batches"]), int(kv["stored_batches"])
    # After the first result only probes are tried, one batch at a time
    # after stored runs of 16, 32, 64... batches.
    assert batches >= 40 and stored >= batches * 3 // 4, kv
    assert int(kv["wire_bytes"]) * 100 >= int(kv["raw_bytes"]) * 97, kv
    rx.stop()
    assert_records_equal(pcaplib.read_named(str(rx.files()[0])), expected, ifname="enc/random.pcap")


def test_compressible_batches_stay_compressed(env):
    path, expected = capture(env, "text.pcap", lambda r, i: (b"GET /index.html HTTP/1.1 %d " % i) * 20)
    rx = env.receiver()
    rc, err = env.run_sensor(path, rx.port, codec="lz4", sensor_id="txt", env=BLOCK)
    assert rc == 0, err
    kv = parse_kv(err)
    assert kv["stored_batches"] == "0", kv
    assert int(kv["wire_bytes"]) * 4 < int(kv["raw_bytes"]), kv
    rx.stop()
    assert_records_equal(pcaplib.read_named(str(rx.files()[0])), expected, ifname="txt/text.pcap")
