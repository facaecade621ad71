"""Well-behaved traffic that must survive whatever a bad client does.

GoodTraffic(env, rx, captures) starts, before the attack:
  * a slow protocol client (psclient) that stays connected and sends a small
    batch every 20 ms, waiting for each ACK, until stopped;
  * a real sensor streaming a generated capture.
finish() stops the client cleanly (BYE) and waits for the sensor; check()
(after rx.stop()) asserts both streams arrived complete and byte-identical.
With tls=(ssl_context, sensor_args) both speak TLS.
"""
import threading
import time

import psclient
from conftest import assert_records_equal, pcaplib, read_outputs


class GoodTraffic:
    def __init__(self, env, rx, captures, tls=None, sensor_env=None, tag="good"):
        self.env, self.rx = env, rx
        self.tag = tag
        self.ctx, self.sensor_args = (tls if tls else (None, []))
        self.path, self.expected = captures.varied(3000, seed=4242, name="%s.pcap" % tag)
        self.slow_records = pcaplib.gen_varied(4000, 777)
        self.sent = []
        self.error = None
        self.stop_evt = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(20):
            raise AssertionError("slow client did not get ACCEPT: %r" % self.error)
        self.sensor = env.start_sensor(self.path, rx.port, sensor_id=tag + "-sensor",
                                       args=self.sensor_args, env=sensor_env)

    def _run(self):
        try:
            c = psclient.Client("127.0.0.1", self.rx.port, tls=self.ctx,
                                server_hostname="localhost" if self.ctx else None)
            kind, info = c.hello(self.tag + "-slow")
            if kind != "ACCEPT":
                raise AssertionError("slow client: %s %r" % (kind, info))
            c.iface(0, "eth0")
            self.ready.set()
            seq, i = 0, 0
            while not self.stop_evt.is_set() and i < len(self.slow_records):
                chunk = self.slow_records[i:i + 10]
                seq += 1
                c.batch(seq, chunk)
                c.wait_ack(seq)
                self.sent.extend(chunk)
                i += len(chunk)
                time.sleep(0.02)
            c.bye(seq)
            c.close()
        except Exception as e:  # reported by finish()
            self.error = e
            self.ready.set()

    def finish(self, timeout=120):
        rc, err = self.env.wait_sensor(self.sensor, timeout=timeout)
        assert rc == 0, "good sensor failed during the attack:\n%s" % err
        self.stop_evt.set()
        self.thread.join(30)
        assert self.error is None, "slow client failed during the attack: %r" % self.error
        assert len(self.sent) > 0

    def check(self):
        """After rx.stop(): both good streams complete and byte-identical."""
        got = read_outputs(self.rx.files())
        sensor_name = "%s-sensor/%s" % (self.tag, self.path.name)
        slow_name = "%s-slow/eth0" % self.tag
        assert_records_equal([g for g in got if g[0] == sensor_name], self.expected,
                             who=sensor_name)
        assert_records_equal([g for g in got if g[0] == slow_name], self.sent, who=slow_name)
