"""Test certificates, generated at run time with the openssl CLI.

Certs(dir) makes CAs and leaf certificates on demand:
    c = Certs(tmpdir)
    c.ca("ca")                                   -> (crt, key)
    c.leaf("ca", "server", dns=["localhost"], ips=["127.0.0.1"])  -> (crt, key)
    c.leaf("ca", "old", expired=True)            -> expired (issued by `openssl ca`
                                                    with -startdate/-enddate in the past)
Keys are EC P-256 (fast to generate); leaf certificates carry serverAuth and
clientAuth so one cert can play either role.
"""
import subprocess
from pathlib import Path


def _run(args, cwd):
    p = subprocess.run(args, cwd=str(cwd), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(args), p.stderr))
    return p


CA_CONF = """
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = copy
[policy_any]
commonName = supplied
"""


class Certs:
    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def p(self, name):
        return self.root / name

    def ca(self, name):
        crt, key = self.p(name + ".crt"), self.p(name + ".key")
        if not crt.exists():
            _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "30",
                  "-subj", "/CN=%s" % name,
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], self.root)
        return crt, key

    def leaf(self, ca, name, cn=None, dns=(), ips=(), expired=False):
        ca_crt, ca_key = self.ca(ca)
        crt, key, csr = self.p(name + ".crt"), self.p(name + ".key"), self.p(name + ".csr")
        ext = self.p(name + ".ext")
        sans = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips]
        lines = ["basicConstraints=CA:FALSE", "extendedKeyUsage=serverAuth,clientAuth",
                 "keyUsage=critical,digitalSignature"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=%s" % (cn or name)],
             self.root)
        if expired:
            cadir = self.p(ca + ".cadir")
            cadir.mkdir(exist_ok=True)
            (cadir / "index.txt").touch()
            serial = cadir / "serial"
            if not serial.exists():
                serial.write_text("1000\n")
            conf = cadir / "ca.cnf"
            conf.write_text(CA_CONF.format(dir=cadir))
            _run(["openssl", "ca", "-batch", "-config", str(conf), "-cert", str(ca_crt),
                  "-keyfile", str(ca_key), "-in", str(csr), "-out", str(crt), "-notext",
                  "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                  "-extfile", str(ext)], self.root)
        else:
            _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey",
                  str(ca_key), "-CAcreateserial", "-out", str(crt), "-days", "30",
                  "-extfile", str(ext)], self.root)
        return crt, key
