#!/usr/bin/python3
"""Config reloads (SIGHUP, `pantry reload`) of a running pantry, in front of real nginx PyPIs.

While a client loop asks for index pages and files over one keep-alive connection, pip installs,
and one large download crawls through a rate-limited upstream, pantry's config is reloaded
several times: no request fails and the download completes with the right bytes. A reload that
adds an upstream, changes the index TTL and adds a registry user takes effect for the requests
after it; a file that does not parse is refused with file:line:col (in the log, in `pantry
reload`'s output and in /readyz) and the running config keeps serving; a new listen address is
reported as needing a restart and pantry stays where it was. server.log_level and
server.access_log change live: debug lines come and go, info lines stop at warn, and the access
log turns off and on, while a client loop keeps its one connection. cache.max_size is live too:
lower at once, higher up to what the cache's map (sized at start) holds, the rest needing a
restart.

Run by ctest with the pantry binary as the first argument:
    tests/integration/config_reload_test.py build/asan/cli/pantry
"""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_pypi_upstream  # noqa: E402
import nginx_pypi  # noqa: E402
from pantry_serve import Pantry, clean_env, free_port  # noqa: E402

PANTRY = None
PYTHON = "/usr/bin/python3"
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
BIG_BYTES = 24 << 20  # through nginx at 4 MiB/s: about 6 s in flight
USERS = {"ci": "ci-token-0123456789abcdef", "alice": "alice-token-0123456789abcdef"}


def basic(user):
    raw = f"{user}:{USERS[user]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


class ConfigReloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-reload-test-")
        # Upstream "up": the demo projects, and a large wheel, rate-limited.
        cls.nginx = nginx_pypi.start(os.path.join(cls.work, "up"), build=True, limit_rate="4m")
        cls.big = make_pypi_upstream.add_random_project(
            cls.nginx.root, cls.nginx.files_base, "pantry-big",
            [("pantry_big-1.0-py3-none-any.whl", BIG_BYTES)])
        # Upstream "second": a project only it has.
        cls.second = nginx_pypi.start(os.path.join(cls.work, "second"), build=True)
        make_pypi_upstream.add_random_project(
            cls.second.root, cls.second.files_base, "pantry-only-second",
            [("pantry_only_second-1.0-py3-none-any.whl", 4096)])
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), cls.nginx.index_url,
                            oci=cls.oci_section(["ci"]))
        cls.config = cls.pantry.config

    @classmethod
    def tearDownClass(cls):
        cls.pantry.stop()
        cls.nginx.stop()
        cls.second.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    @staticmethod
    def oci_section(users):
        lines = ["  hosted:\n", "    users:\n"]
        for u in users:
            lines.append(f"      - name: {u}\n        token: \"{USERS[u]}\"\n")
        return "".join(lines)

    def write_config(self, *, second=False, index_ttl="10m", users=("ci",), port=None,
                     broken=False, access_log=None, log_level=None, max_size="2GiB"):
        """The config file serve reads, as the fixture writes it, with the given changes."""
        p = self.pantry
        server = "threads: 2"
        if access_log is not None:
            server += f", access_log: {'true' if access_log else 'false'}"
        if log_level is not None:
            server += f", log_level: {log_level}"
        upstreams = f'    - name: up\n      url: "{self.nginx.index_url}"\n'
        if second:
            upstreams += f'    - name: second\n      url: "{self.second.index_url}"\n'
        text = (f"listen: 127.0.0.1:{port or p.port}\n"
                f"data_dir: {p.data_dir}\n"
                f"cache: {{ max_size: {'2 gigabytes' if broken else max_size} }}\n"
                f"server: {{ {server} }}\n"
                "upstream: { connect_timeout: 2s, header_timeout: 2s, idle_timeout: 2s }\n"
                f"pypi:\n  upstreams:\n{upstreams}  index_ttl: {index_ttl}\n"
                "  negative_ttl: 1s\n  offline: false\n"
                "oci:\n" + self.oci_section(users))
        with open(self.config, "w") as f:
            f.write(text)
        return text

    def reloads(self):
        """pantry_config_reloads_total by outcome, from /metrics."""
        status, _, body = self.pantry.fetch("/metrics")
        self.assertEqual(status, 200, body[:300])
        out = {}
        for m in re.finditer(rb'^pantry_config_reloads_total\{outcome="(\w+)"\} (\d+)$', body,
                             re.M):
            out[m.group(1).decode()] = int(m.group(2))
        return out

    def hangup(self):
        """SIGHUP, then waits until pantry has counted the reload it made."""
        before = sum(self.reloads().values())
        self.pantry.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(self.reloads().values()) > before:
                return
            time.sleep(0.05)
        self.fail(f"no reload counted within 30 s of SIGHUP:\n{self.pantry.tail()}")

    def pantry_reload(self, *args):
        r = subprocess.run([PANTRY, "reload", "--config", self.config, *args],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr

    def upstream_gets(self, server, path):
        return [e for e in server.log_entries() if e.get("uri") == path]

    def readyz(self):
        status, _, body = self.pantry.fetch("/readyz")
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def test_1_reloads_under_load_drop_nothing_and_take_effect(self):
        p = self.pantry
        # Before: one upstream, so the second's project is not found; alice is not a user.
        status, _, body = p.fetch("/simple/pantry-only-second/", JSON)
        self.assertEqual(status, 404, body[:300])
        self.assertEqual(p.fetch("/v2/", basic("alice"))[0], 401)
        self.assertEqual(p.fetch("/v2/", basic("ci"))[0], 200)
        status, _, body = p.fetch("/simple/pantry-demo-lib/", JSON)
        self.assertEqual(status, 200, body[:300])
        small = next(f for f in json.loads(body)["files"] if f["filename"].endswith(".whl"))
        status, _, body = p.fetch("/simple/pantry-big/", JSON)
        self.assertEqual(status, 200, body[:300])
        big_url = json.loads(body)["files"][0]["url"]

        stop = threading.Event()
        failures, counts = [], {"requests": 0}

        def loop():
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=60)
            paths = [("/simple/pantry-demo-lib/", JSON), ("/simple/pantry-demo-app/", {}),
                     (small["url"], {}), ("/readyz", {})]
            while not stop.is_set():
                for path, headers in paths:
                    try:
                        conn.request("GET", path, headers=headers)
                        r = conn.getresponse()
                        data = r.read()
                        if r.status != 200:
                            failures.append(f"GET {path}: {r.status} {data[:200]!r}")
                        elif path == small["url"] and \
                                hashlib.sha256(data).hexdigest() != small["hashes"]["sha256"]:
                            failures.append(f"GET {path}: wrong bytes")
                        counts["requests"] += 1
                    except (OSError, http.client.HTTPException) as e:
                        failures.append(f"GET {path}: {e!r}")
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=60)
            conn.close()

        big_result = {}

        def download():
            started = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=120)
                conn.request("GET", big_url)
                r = conn.getresponse()
                h = hashlib.sha256()
                size = 0
                while chunk := r.read(1 << 16):
                    h.update(chunk)
                    size += len(chunk)
                big_result.update(status=r.status, size=size, sha256=h.hexdigest(),
                                  seconds=time.monotonic() - started)
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                big_result.update(error=repr(e))

        venv = os.path.join(self.work, "venv")
        subprocess.run([PYTHON, "-m", "venv", venv], check=True, env=clean_env())
        pip_result = {}

        def pip():
            cmd = [os.path.join(venv, "bin", "python"), "-m", "pip", "install",
                   "--index-url", p.index_url, "pantry-demo-app"]
            r = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=300)
            pip_result.update(code=r.returncode, out=r.stdout + r.stderr)

        threads = [threading.Thread(target=f) for f in (loop, download, pip)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            # Reloads while it all runs: the same file, then each change, by SIGHUP and by
            # `pantry reload` in turn.
            self.write_config()
            self.hangup()
            self.write_config(second=True)
            code, out = self.pantry_reload()
            self.assertEqual(code, 0, out)
            self.assertIn("changed: pypi.upstreams", out)
            self.write_config(second=True, index_ttl="0s")
            self.hangup()
            self.write_config(second=True, index_ttl="0s", users=("ci", "alice"))
            code, out = self.pantry_reload()
            self.assertEqual(code, 0, out)
            self.assertIn("changed: oci.hosted.users", out)
            self.assertNotIn(USERS["alice"], out)
            self.hangup()
            self.assertIsNone(big_result.get("status"),
                              f"the large download ended before the reloads did: {big_result}; "
                              "make it larger or slower")
        finally:
            for t in threads[1:]:
                t.join(timeout=300)
            stop.set()
            threads[0].join(timeout=60)

        self.assertEqual(failures, [], f"{len(failures)} of {counts['requests']} requests failed"
                                       f"\n--- pantry log:\n{p.tail()}")
        self.assertGreater(counts["requests"], 20)
        self.assertEqual(big_result.get("status"), 200, big_result)
        self.assertEqual(big_result.get("size"), BIG_BYTES, big_result)
        self.assertEqual(big_result.get("sha256"),
                         self.big["pantry_big-1.0-py3-none-any.whl"]["sha256"], big_result)
        self.assertEqual(pip_result.get("code"), 0, pip_result.get("out"))
        self.assertEqual(self.reloads(), {"applied": 5, "needs_restart": 0, "refused": 0})
        print(f"\n5 reloads during {counts['requests']} looped requests, a pip install and a "
              f"{BIG_BYTES >> 20} MiB download of {big_result['seconds']:.1f} s: none failed",
              file=sys.stderr)

        # After: the second upstream answers, alice logs in, and with index_ttl 0s every page
        # request goes upstream again (a revalidation).
        status, _, body = p.fetch("/simple/pantry-only-second/", JSON)
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(p.fetch("/v2/", basic("alice"))[0], 200)
        page = "/simple/pantry-demo-util/"
        before = len(self.upstream_gets(self.nginx, page))
        for _ in range(3):
            self.assertEqual(p.fetch(page, JSON)[0], 200)
        time.sleep(0.2)  # nginx writes a log line when a request ends
        self.assertEqual(len(self.upstream_gets(self.nginx, page)) - before, 3,
                         self.upstream_gets(self.nginx, page))
        last = self.readyz()["config"]
        self.assertTrue(last["valid"], last)
        self.assertEqual(last["last_reload"]["outcome"], "applied", last)

    def test_2_an_invalid_file_is_refused_and_the_running_config_stays(self):
        p = self.pantry
        text = self.write_config(second=True, index_ttl="0s", users=("ci", "alice"), broken=True)
        line = text.splitlines().index("cache: { max_size: 2 gigabytes }") + 1
        where = f"{self.config}:{line}:"
        # Without --data-dir the file must name the serve: it is refused before it is sent.
        before = self.reloads()["refused"]
        code, out = self.pantry_reload()
        self.assertEqual(code, 1, out)
        self.assertIn("reload refused here", out)
        self.assertRegex(out, re.escape(where) + r"\d+: cache\.max_size: ")
        self.assertEqual(self.reloads()["refused"], before)
        # With it, the serve refuses it, and so does SIGHUP.
        code, out = self.pantry_reload("--data-dir", p.data_dir)
        self.assertEqual(code, 1, out)
        self.assertIn("reload refused; the running config stays", out)
        self.assertRegex(out, re.escape(where) + r"\d+: cache\.max_size: ")
        self.hangup()
        time.sleep(0.1)
        log = p.tail(200)
        self.assertRegex(log, re.escape(where) + r"\d+: cache\.max_size: ", log)
        self.assertIn("refused; the running config stays", log)
        ready = self.readyz()
        self.assertFalse(ready["config"]["valid"], ready)
        self.assertEqual(ready["config"]["last_reload"]["outcome"], "refused", ready)
        self.assertIn(where, ready["config"]["last_reload"]["error"], ready)
        self.assertEqual(self.reloads()["refused"], 2)
        # What ran before still runs: both upstreams, alice.
        self.assertEqual(p.fetch("/simple/pantry-only-second/", JSON)[0], 200)
        self.assertEqual(p.fetch("/v2/", basic("alice"))[0], 200)

    def test_3_a_new_listen_address_needs_a_restart(self):
        p = self.pantry
        other = free_port()
        self.write_config(second=True, index_ttl="0s", users=("ci",), port=other)
        code, out = self.pantry_reload()
        self.assertEqual(code, 0, out)
        self.assertIn(f"needs a restart: listen (running 127.0.0.1:{p.port}, the file says "
                      f"127.0.0.1:{other})", out)
        self.assertIn("changed: oci.hosted.users", out)  # the rest of the file is applied
        self.assertIn("listen needs a restart to change", p.tail(50))
        self.assertEqual(p.fetch("/v2/", basic("alice"))[0], 401)
        self.assertEqual(p.fetch("/readyz")[0], 200)
        with self.assertRaises(OSError):
            http.client.HTTPConnection("127.0.0.1", other, timeout=5).request("GET", "/healthz")
        ready = self.readyz()
        self.assertEqual(ready["config"]["last_reload"]["outcome"], "needs_restart", ready)
        self.assertEqual(ready["config"]["last_reload"]["needs_restart"],
                         [{"key": "listen", "running": f"127.0.0.1:{p.port}",
                           "wanted": f"127.0.0.1:{other}"}], ready)
        self.assertGreaterEqual(self.reloads()["needs_restart"], 1)

    def log_mark(self):
        """Where pantry's log ends now, for log_since()."""
        return os.path.getsize(self.pantry.log_path)

    def log_since(self, mark):
        with open(self.pantry.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def test_4_log_level_and_access_log_change_live(self):
        p = self.pantry
        stop = threading.Event()
        failures, counts = [], {"requests": 0, "connections": 1}

        def loop():
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=60)
            while not stop.is_set():
                try:
                    conn.request("GET", "/simple/pantry-demo-lib/", headers=JSON)
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200:
                        failures.append(f"{r.status} {data[:200]!r}")
                    counts["requests"] += 1
                except (OSError, http.client.HTTPException) as e:
                    failures.append(repr(e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=60)
                    counts["connections"] += 1
            conn.close()

        # The probes' own connection: pantry logs an exchange's access line before it reads the
        # next request on that connection, so once the answer to a second request is in, the
        # first one's line is in the log or never will be.
        probes = http.client.HTTPConnection("127.0.0.1", p.port, timeout=60)

        def get(path, headers=None):
            probes.request("GET", path, headers=headers or {})
            r = probes.getresponse()
            body = r.read()
            self.assertEqual(r.status, 200, f"GET {path}: {body[:300]!r}\n{p.tail()}")

        def probe(tag):
            get(f"/healthz?probe={tag}")
            get("/healthz?sync")

        def reload(expect_changed, **settings):
            self.write_config(second=True, index_ttl="0s", **settings)
            code, out = self.pantry_reload()
            self.assertEqual(code, 0, out)
            for key in expect_changed:
                self.assertIn(f"changed: {key}", out)

        # index_ttl 0s: each request for the page asks the upstream again.
        page = "/simple/pantry-demo-util/"
        fetch_line = re.compile(r"\[debug\] upstream client: GET http://\S+/pantry-demo-util/: "
                                r"HTTP (200|304), header after [0-9.]+ ms$", re.M)
        thread = threading.Thread(target=loop)
        thread.start()
        try:
            reload([])  # test_3 left another port in the file
            mark = self.log_mark()
            get(page, JSON)
            log = self.log_since(mark)
            self.assertNotIn("[debug]", log)

            # info -> debug: a line per upstream request appears.
            reload(["server.log_level"], log_level="debug")
            mark = self.log_mark()
            get(page, JSON)
            self.assertRegex(self.log_since(mark), fetch_line)

            # debug -> warn: no debug line, and the reload's own report (info) is not logged;
            # a second SIGHUP logs nothing of its own at all. The access log goes on.
            self.write_config(second=True, index_ttl="0s", log_level="warn")
            mark = self.log_mark()
            self.hangup()
            get(page, JSON)
            probe("at-warn")
            log = self.log_since(mark)
            self.assertIn("SIGHUP received", log)  # logged at debug, before the reload
            self.assertNotIn("pantry serve: reloaded", log)
            self.assertNotRegex(log, fetch_line)
            self.assertIn("GET /healthz?probe=at-warn 200 ", log)
            mark = self.log_mark()
            self.hangup()
            get(page, JSON)
            probe("still-warn")
            log = self.log_since(mark)
            self.assertNotIn("SIGHUP received", log)
            self.assertNotIn("pantry serve: reloaded", log)
            self.assertNotRegex(log, fetch_line)
            self.assertIn("GET /healthz?probe=still-warn 200 ", log)

            # The access log off, then on again.
            reload(["server.access_log"], log_level="warn", access_log=False)
            mark = self.log_mark()
            probe("off")
            self.assertNotIn("/healthz?probe=off", self.log_since(mark))
            # Both back: the reload's report is logged at info again.
            mark = self.log_mark()
            reload(["server.access_log", "server.log_level"], access_log=True)
            probe("on")
            log = self.log_since(mark)
            self.assertIn("GET /healthz?probe=on 200 ", log)
            self.assertIn("[info] pantry serve: reloaded", log)
        finally:
            stop.set()
            thread.join(timeout=60)
            probes.close()
        self.assertEqual(failures, [], f"{len(failures)} of {counts['requests']} requests failed"
                                       f"\n--- pantry log:\n{p.tail()}")
        self.assertEqual(counts["connections"], 1, "the client loop had to reconnect")
        self.assertGreater(counts["requests"], 0)

    def test_5_the_cache_quota_is_live_up_to_what_the_map_holds(self):
        # Started with 2GiB: a map of 4GiB, which holds a quota of up to 2GiB.
        self.write_config(second=True, index_ttl="0s", max_size="1GiB")
        code, out = self.pantry_reload()
        self.assertEqual(code, 0, out)
        self.assertIn("changed: cache.max_size", out)
        self.assertNotIn("needs a restart", out)
        self.write_config(second=True, index_ttl="0s", max_size="8GiB")
        code, out = self.pantry_reload()
        self.assertEqual(code, 0, out)
        self.assertIn("changed: cache.max_size", out)
        self.assertIn("needs a restart: cache.max_size (running 2GiB, the file says 8GiB)", out)
        self.assertEqual(self.pantry.fetch("/simple/pantry-demo-lib/", JSON)[0], 200)


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
