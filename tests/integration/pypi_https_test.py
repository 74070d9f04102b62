#!/usr/bin/python3
"""pantry in front of an HTTPS PyPI: nginx with a certificate from a CA this test makes.

Run by ctest with the pantry binary as the first argument:
    tests/integration/pypi_https_test.py build/asan/cli/pantry
With the CA named in the upstream's `ca_file`, pip installs through pantry; without it, pantry
refuses the upstream and says which host failed verification and why.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, clean_env  # noqa: E402

PANTRY = None
PYTHON = "/usr/bin/python3"


def make_ca(directory):
    """A CA and a certificate for localhost (and 127.0.0.1) signed by it; returns the paths."""
    script = """set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=pantry test CA" -keyout ca.key -out ca.pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile ext.cnf -out server.pem
"""
    r = subprocess.run(["sh", "-c", script], cwd=directory, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return (os.path.join(directory, "ca.pem"), os.path.join(directory, "server.pem"),
            os.path.join(directory, "server.key"))


class HttpsUpstreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-https-test-")
        cls.ca, cert, key = make_ca(cls.work)
        cls.tree = os.path.join(cls.work, "upstream")
        cls.nginx = nginx_pypi.start(cls.tree, build=True, tls=(cert, key))
        with open(os.path.join(cls.tree, "manifest.json")) as f:
            cls.manifest = json.load(f)
        cls.pantries = []

    @classmethod
    def tearDownClass(cls):
        for p in cls.pantries:
            p.stop()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def pantry(self, name, **kwargs):
        p = Pantry(PANTRY, os.path.join(self.work, name), self.nginx.index_url,
                   upstream_timeouts="connect_timeout: 5s, header_timeout: 10s, idle_timeout: 10s",
                   **kwargs)
        self.pantries.append(p)
        return p

    def test_fixture_really_speaks_https(self):
        self.assertTrue(self.nginx.index_url.startswith("https://localhost:"), self.nginx.index_url)
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                            "--cacert", self.ca, self.nginx.index_url + "pantry-demo-lib/"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.stdout, "200", r.stderr)

    def test_pip_installs_through_pantry_when_the_config_names_the_ca(self):
        pantry = self.pantry("trusting", ca_file=self.ca)
        venv = os.path.join(self.work, "venv")
        subprocess.run([PYTHON, "-m", "venv", venv], check=True, env=clean_env())
        scenario = self.manifest["expect"]["scenarios"][0]
        cmd = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", *scenario["pip_args"],
               "--index-url", pantry.index_url]
        r = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, f"{' '.join(cmd)}:\n{r.stdout}\n{r.stderr}\n"
                                          f"--- pantry log:\n{pantry.tail()}")
        listed = subprocess.run([cmd[0], "-m", "pip", "list", "--format", "json"], env=clean_env(),
                                capture_output=True, text=True, check=True).stdout
        installed = {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"]
                     for p in json.loads(listed)}
        for project, version in scenario["installs"].items():
            self.assertEqual(installed.get(project), version, f"{project}: installed {installed}")
        # Files came over HTTPS from the files port, through pantry.
        gets = [e for e in self.nginx.log_entries()
                if e.get("port") == self.nginx.files_port and e.get("uri", "").endswith(".whl")]
        self.assertTrue(gets, f"no wheel fetched from the files port: {self.nginx.log_entries()[-5:]}")

    def test_without_the_ca_pantry_refuses_naming_the_host_and_the_reason(self):
        pantry = self.pantry("default-trust")
        status, _, body = pantry.fetch("/simple/pantry-demo-lib/")
        text = body.decode(errors="replace")
        self.assertEqual(status, 502, text)
        host = f"localhost:{self.nginx.index_port}"
        self.assertIn(host, text)
        self.assertIn("certificate verify failed", text)
        self.assertIn("unable to get local issuer certificate", text)
        # Nothing was cached: the same request still fails, it is not answered from a bad copy.
        status, _, body = pantry.fetch("/simple/pantry-demo-lib/")
        self.assertEqual(status, 502, body)


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
