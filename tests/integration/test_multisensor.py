"""Several sensors stream into one receiver at the same time."""

import collections

from conftest import (assert_clean_stderr, assert_records_equal, parse_kv, pcaplib,
                      read_outputs, tool_check)

SENSORS = 8
PER_SENSOR = 2000
CODECS = ("none", "zlib", "lz4")


def test_eight_concurrent_sensors(env, captures):
    rx = env.receiver()
    runs = []
    for i in range(SENSORS):
        path, expected = captures.varied(PER_SENSOR, seed=100 + i, fmt="pcap-ns",
                                         name="multi-%d.pcap" % i)
        sid = "sensor%d" % i
        p = env.start_sensor(path, rx.port, codec=CODECS[i % len(CODECS)], sensor_id=sid)
        runs.append((sid, path, expected, p))
    for sid, path, expected, p in runs:
        rc, err = env.wait_sensor(p, timeout=180)
        assert rc == 0, "%s exit %d:\n%s" % (sid, rc, err)
        assert_clean_stderr(err, sid)
        assert parse_kv(err).get("packets") == str(PER_SENSOR), sid
    rx.stop()

    files = rx.files()
    assert len(files) == 1, files
    got = read_outputs(files)
    by_iface = collections.defaultdict(list)
    for rec in got:
        by_iface[rec[0]].append(rec)
    want = {"%s/%s" % (sid, path.name): expected for sid, path, expected, _ in runs}
    assert sorted(by_iface) == sorted(want)
    for name, expected in want.items():
        # same records, same order, nothing lost, nothing twice
        assert_records_equal(by_iface[name], expected, ifname=name, who=name)
    assert len(got) == SENSORS * PER_SENSOR
    # every packet of every input exactly once, whatever the interface
    want_set = collections.Counter((r.ts_ns, r.data) for exp in want.values() for r in exp)
    assert collections.Counter((g[1], g[4]) for g in got) == want_set
    interfaces, _ = pcaplib.read(str(files[0]))
    assert len(interfaces) == SENSORS
    assert tool_check(files[0]) == SENSORS * PER_SENSOR
