"""The receiver's security counters, as tests read them.

Today they come from the receiver's final "stopped: ...;" log line
(`rejected_<reason>=N tls_failures_<reason>=N auth_failures=N`). Once the
receiver serves /metrics, pass http="127.0.0.1:PORT" and the same names are
read from packetstreamer_receiver_rejected_connections_total{reason=...},
packetstreamer_receiver_tls_handshake_failures_total{reason=...} and
packetstreamer_receiver_auth_failures_total, so tests need not change.
"""
import re
import urllib.request

_METRIC_TO_KEY = {
    "packetstreamer_receiver_rejected_connections_total": "rejected_",
    "packetstreamer_receiver_tls_handshake_failures_total": "tls_failures_",
}


def from_log(stderr_text):
    for line in reversed(stderr_text.splitlines()):
        if "stopped:" in line and "auth_failures=" in line:
            kv = line.split(";", 1)[1] if ";" in line else line
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", kv)}
    return {}


def from_metrics(http):
    text = urllib.request.urlopen("http://%s/metrics" % http, timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(\w+)(?:\{reason="([^"]*)"\})?\s+(\d+)', line)
        if not m:
            continue
        name, reason, value = m.groups()
        if name in _METRIC_TO_KEY and reason:
            out[_METRIC_TO_KEY[name] + reason] = int(value)
        elif name == "packetstreamer_receiver_auth_failures_total":
            out["auth_failures"] = int(value)
    return out


def counters(rx, http=None):
    """Counters of a Receiver (conftest.Receiver): from /metrics when http is
    given (receiver running), else from the log (after rx.stop())."""
    if http:
        return from_metrics(http)
    return from_log(rx.stderr)
