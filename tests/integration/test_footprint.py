"""What a process loads: libcurl (and the twenty libraries Debian's libcurl
brings: Kerberos, LDAP, SSH, RTMP...) only when a feature needs it
(src/core/curlload.h). A sensor without Kubernetes and a receiver without S3
or a tier never map it, which is ~3.5 MiB less resident memory on every node;
a receiver with S3 loads it at start and uploads through it.

The sensor here reads a named pipe (`mkfifo p; tcpdump -w p` feeding
`--read-file p`), which also checks that the sensor does not read the pipe
twice: it once opened the file to look at the pcap magic first, taking
those bytes from libpcap."""

import os
import time

from conftest import assert_records_equal, output_files, pcaplib, read_outputs
from http_helpers import http_args

from s3rver import S3rver, aws_env, s3_config, s3_metrics, wait_for


def mapped(pid, name):
    with open("/proc/%d/maps" % pid) as f:
        return any(name in line for line in f)


def test_sensor_and_receiver_without_http_clients_do_not_load_libcurl(env, captures):
    path, expected = captures.varied(2_000, seed=5, fmt="pcap-ns")
    rx = env.receiver()
    fifo = env.workdir / "live.pcap"
    os.mkfifo(fifo)
    p = env.start_sensor(fifo, rx.port, sensor_id="lean")
    data = path.read_bytes()
    w = open(fifo, "wb")  # the sensor is reading the capture from here
    try:
        w.write(data[: len(data) // 2])
        w.flush()
        # the receiver has the sensor's first packets: both are running
        deadline = time.time() + 30
        while "lean" not in rx.stderr and time.time() < deadline:
            time.sleep(0.1)
        assert p.poll() is None, "sensor exited early"
        assert not mapped(p.pid, "libcurl"), "a sensor without Kubernetes mapped libcurl"
        assert not mapped(rx.proc.pid, "libcurl"), "a receiver without S3 or a tier mapped libcurl"
        w.write(data[len(data) // 2:])
    finally:
        w.close()
    rc, err = env.wait_sensor(p)
    assert rc == 0, err
    rx.stop()
    assert_records_equal(read_outputs(output_files(rx.outdir)), expected)


def test_receiver_with_s3_loads_libcurl_and_uploads(env, captures):
    srv = S3rver(env.workdir)
    srv.start()
    try:
        path, _ = captures.varied(3_000, seed=6, fmt="pcap-ns")
        hport, hargs = http_args()
        rx = env.receiver(config=s3_config(env, srv, file={"rotateSizeMB": 1}), args=hargs,
                          env=aws_env(env))
        assert mapped(rx.proc.pid, "libcurl.so.4")
        rc, err = env.run_sensor(path, rx.port, sensor_id="up")
        assert rc == 0, err
        done = rx.files()  # completed by rotation; the open one is not uploaded yet
        assert len(done) >= 2
        wait_for(lambda: s3_metrics(hport).get("uploaded_total", 0) >= len(done), "uploads")
        for f in done:
            assert srv.get("cap/" + f.name) == f.read_bytes(), "object differs from " + f.name
        rx.stop()
    finally:
        srv.stop()
