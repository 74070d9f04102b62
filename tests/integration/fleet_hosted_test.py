#!/usr/bin/python3
"""A hosted Python index in a hashed fleet: three pantry instances behind a real HAProxy running
deploy/haproxy/haproxy.cfg (PANTRY_HOSTED_INDEXES=team), nginx serving the fixture PyPI as the
public upstream.

pantry1 hosts the index `team` (pypi.hosted); every instance has the hosted upstream `team-owner`
(http://pantry1/team/simple/, hosted: true), which it asks first for every project: pantry1 too,
because a page of pantry2 or pantry3 lists the owner's files under /files/team-owner/…, and
HAProxy may send those to any instance. What this test checks:

- twine uploads through HAProxy, which sends /team/ to pantry1;
- pip installs a hosted project through HAProxy, with a dependency from the public upstream and a
  name that is BOTH public and hosted (pantry-demo-util: 0.9-2.0 public, 5.0 hosted); each
  instance, asked directly, serves the hosted files of both hosted names (sha256 of the uploaded
  bytes), never the public project, and the public upstream is never asked for a hosted name;
- pantry1 stopped: the others answer 502 naming the owner for a hosted name they never served
  and for a public name they never served (never the public file), and go on serving what they
  have (a hosted page they cached, a public page whose owner 404 is still fresh);
- pantry1 back on its data dir: the names that failed are served again.

Run by ctest with the pantry binary as the first argument:
    tests/integration/fleet_hosted_test.py build/asan/cli/pantry
The test methods run in name order, each building on the state the ones before left.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import clients  # noqa: E402
import make_pypi_upstream as mk  # noqa: E402
import nginx_pypi  # noqa: E402
from haproxy import HAProxy  # noqa: E402
from pantry_serve import Pantry, free_port, get  # noqa: E402

PANTRY = None
CI_TOKEN = "fleet-ci-token-0123456789"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
MTIME = 1700000000
OWNER = "team-owner"  # the hosted upstream's name on every instance

USERS = f"""  hosted:
    users: [{{name: ci, token: "{CI_TOKEN}"}}]
"""
HOSTED = """  hosted:
    - {name: team, uploaders: [ci]}
"""
# What each release is for: team-tool is only hosted and needs pantry-demo-lib (public), which
# needs pantry-demo-util (public 0.9-2.0, hosted 5.0: the hosted one must win everywhere);
# team-extra is never asked for before pantry1 stops.
RELEASES = {
    "team-tool": mk.Release("Team.Tool", "1.0", ("pantry-demo-lib>=1.0",)),
    "pantry-demo-util": mk.Release("pantry-demo-util", "5.0"),
    "team-extra": mk.Release("team-extra", "0.1"),
}


class HostedIndexInAFleetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-fleet-hosted-test-")
        cls.nginx = None
        cls.lb = None
        cls.pantries = []
        try:
            cls.nginx = nginx_pypi.start(os.path.join(cls.work, "pypi"), build=True)
            cls.wheels = {}  # project -> (filename, bytes, path)
            dist = os.path.join(cls.work, "dist")
            os.makedirs(dist)
            for project, release in RELEASES.items():
                name, data = mk.build_wheel(release, mk.core_metadata(release), MTIME)
                path = os.path.join(dist, name)
                with open(path, "wb") as f:
                    f.write(data)
                cls.wheels[project] = (name, data, path)
            cls.owner_port = free_port()
            for i in range(3):
                cls.pantries.append(cls.start_pantry(i))
            cls.lb = HAProxy(cls.work, cls.pantries, variables={"PANTRY_HOSTED_INDEXES": "team"})
            for i in range(3):
                cls.lb.wait_status(f"pantry{i + 1}", "UP")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.lb is not None:
            cls.lb.stop()
        for p in cls.pantries:
            p.stop()
        if cls.nginx is not None:
            cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def start_pantry(cls, i):
        owner = (f'    - {{name: {OWNER}, url: "http://127.0.0.1:{cls.owner_port}/team/simple/", '
                 f'hosted: true}}\n')
        # negative_ttl: how long an instance goes on serving a public name the owner said it
        # does not host while the owner is down.
        return Pantry(PANTRY, os.path.join(cls.work, f"pantry{i + 1}"), cls.nginx.index_url,
                      port=cls.owner_port if i == 0 else None, more_upstreams=owner,
                      negative_ttl="10m",
                      upstream_timeouts="connect_timeout: 2s, header_timeout: 5s, "
                                        "idle_timeout: 5s",
                      oci=USERS if i == 0 else None, pypi_extra=HOSTED if i == 0 else None)

    def logs(self):
        return self.lb.tails(self.pantries)

    def page(self, pantry, project):
        """(status, the JSON page or the body's text) of /simple/PROJECT/ asked of PANTRY."""
        status, _, body = pantry.fetch(f"/simple/{project}/", {"Accept": JSON_TYPE})
        return status, (json.loads(body) if status == 200 else body.decode(errors="replace"))

    def assert_hosted_everywhere(self, project, instances=None):
        """Each instance (or those of INSTANCES) serves PROJECT's hosted wheel alone, by a file
        URL whose bytes are the uploaded ones."""
        filename, data, _ = self.wheels[project]
        want = hashlib.sha256(data).hexdigest()
        for i in instances or range(3):
            p = self.pantries[i]
            status, page = self.page(p, project)
            self.assertEqual(status, 200, f"pantry{i + 1} /simple/{project}/: {page}{self.logs()}")
            files = [(f["filename"], f["hashes"]["sha256"]) for f in page["files"]]
            self.assertEqual(files, [(filename, want)],
                             f"pantry{i + 1} /simple/{project}/ is not the hosted project alone")
            url = page["files"][0]["url"]
            status, _, body = get(p.url(url) if url.startswith("/") else url)
            self.assertEqual((status, hashlib.sha256(body).hexdigest()), (200, want),
                             f"pantry{i + 1}: the file at {url}{self.logs()}")

    def upstream_asked(self, since, *names):
        """The requests nginx answered since entry SINCE whose URI names one of NAMES."""
        return [e.get("uri", e.get("request")) for e in self.nginx.log_entries()[since:]
                if any(n in e.get("uri", e.get("request", "")) for n in names)]

    # ---- the scenario, in order ----

    def test_a_twine_uploads_through_haproxy_to_the_owner(self):
        for project, (_, _, path) in self.wheels.items():
            r = clients.twine_upload(self.lb.url("/team/"), "ci", CI_TOKEN, [path])
            self.assertEqual(r.returncode, 0, f"{' '.join(r.args)}:\n{r.stdout}{r.stderr}"
                                              f"{self.logs()}")
        routed = [(server, method) for server, method, path in self.lb.routed()
                  if path.startswith("/team/")]
        self.assertIn(("pantry1", "POST"), routed, self.lb.tail())
        self.assertEqual({s for s, _ in routed}, {"pantry1"},
                         f"/team/ went elsewhere than pantry1: {routed}")
        status, _, body = self.pantries[0].fetch("/team/simple/", {"Accept": JSON_TYPE})
        self.assertEqual(sorted(p["name"] for p in json.loads(body)["projects"]),
                         ["Team.Tool", "pantry-demo-util", "team-extra"], body)

    def test_b_pip_through_haproxy_and_every_instance_serve_the_hosted_files(self):
        mark = len(self.nginx.log_entries())
        proc, got = clients.pip_install(self.work, "first", self.lb.url("/simple/"),
                                        ["team-tool"], env={"PIP_RETRIES": "5"})
        self.assertEqual(proc.returncode, 0, f"{' '.join(proc.args)}:\n{proc.stdout}"
                                             f"{proc.stderr}{self.logs()}")
        self.assertEqual({k: got.get(k) for k in ("team-tool", "pantry-demo-lib",
                                                  "pantry-demo-util")},
                         {"team-tool": "1.0", "pantry-demo-lib": "1.1",
                          "pantry-demo-util": "5.0"}, got)
        # Whichever instance a page hashed to, each one serves the hosted projects alone.
        self.assert_hosted_everywhere("team-tool")
        self.assert_hosted_everywhere("pantry-demo-util")
        self.assertEqual(self.upstream_asked(mark, "pantry-demo-util", "pantry_demo_util",
                                             "team-tool", "team_tool"), [],
                         "the public upstream was asked for a hosted name")
        self.assertNotEqual(self.upstream_asked(mark, "/pantry-demo-lib/"), [],
                            "the public dependency came from nowhere: the test proves nothing")
        for i, p in enumerate(self.pantries, 1):
            status, _, body = p.fetch("/pypi/pantry-demo-util/json")
            self.assertEqual(status, 404, f"pantry{i}: the JSON API answered for a hosted name: "
                                          f"{body[:300]!r}")
            # A public name the owner does not host: served, and its 404 remembered.
            status, page = self.page(p, "pantry-demo-lib")
            self.assertEqual(status, 200, f"pantry{i}: {page}")

    def test_c_owner_stopped_the_others_fail_closed_and_serve_what_they_have(self):
        self.pantries[0].stop()
        self.lb.wait_status("pantry1", "DOWN")
        mark = len(self.nginx.log_entries())
        for i in (1, 2):
            p = self.pantries[i]
            # Never asked before: a hosted name and a public one. Neither is the public project.
            for project in ("team-extra", "wheel"):
                status, body = self.page(p, project)
                self.assertEqual(status, 502, f"pantry{i + 1} /simple/{project}/: {body}")
                self.assertIn(f'pantry cannot tell whether "{project}" is a hosted project: the '
                              f'hosted upstream {OWNER} (http://127.0.0.1:{self.owner_port}'
                              f'/team/simple/) did not answer', body)
            # What they cached goes on: the owner's page of a hosted name (and its file), and a
            # public page whose owner 404 is fresh.
            self.assert_hosted_everywhere("pantry-demo-util", [i])
            status, page = self.page(p, "pantry-demo-lib")
            self.assertEqual(status, 200, f"pantry{i + 1}: {page}")
        self.assertEqual(self.upstream_asked(mark, "team-extra", "team_extra", "/wheel/",
                                             "pantry-demo-util", "pantry_demo_util"), [],
                         "with the owner down, the public upstream was asked for a name")

    def test_d_owner_back_serves_again(self):
        self.pantries[0] = self.start_pantry(0)
        self.lb.wait_status("pantry1", "UP")
        self.assert_hosted_everywhere("team-extra")
        for i in (1, 2):
            status, page = self.page(self.pantries[i], "wheel")
            self.assertEqual(status, 200, f"pantry{i + 1} /simple/wheel/: {page}{self.logs()}")
        proc, got = clients.pip_install(self.work, "back", self.lb.url("/simple/"),
                                        ["team-extra", "wheel==0.38.4"], env={"PIP_RETRIES": "5"})
        self.assertEqual(proc.returncode, 0, f"{' '.join(proc.args)}:\n{proc.stdout}"
                                             f"{proc.stderr}{self.logs()}")
        self.assertEqual((got.get("team-extra"), got.get("wheel")), ("0.1", "0.38.4"), got)


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
