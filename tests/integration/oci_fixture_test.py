#!/usr/bin/python3
"""Self-check of the container registry fixtures: tests/fixtures/make_oci_images.py builds the
images, tests/fixtures/oci_registry.py serves them from a real docker-registry (open, htpasswd,
token auth, and as a pull-through proxy), and skopeo pushes and pulls them.

Run by ctest (no pantry involved), or directly:
    /usr/bin/python3 tests/integration/oci_fixture_test.py
The images are built once per run into a temp dir (KEEP=1 keeps it).
"""

import base64
import http.client
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_oci_images as moi  # noqa: E402
import oci_registry  # noqa: E402
from oci_registry import Registry  # noqa: E402

ALL_MANIFEST_TYPES = ", ".join([moi.OCI_MANIFEST, moi.OCI_INDEX, moi.DOCKER_MANIFEST,
                                moi.DOCKER_MANIFEST_LIST])


def http_get(url, headers=None, method="GET"):
    """(status, headers, body) with no auth handling, no redirects."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def jwt_parts(token):
    """(header, claims) of a JWT, unverified."""
    def part(s):
        return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    header, claims, _ = token.split(".")
    return part(header), part(claims)


def fetch_token(realm, query, creds=None):
    headers = {}
    if creds:
        headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
    req = urllib.request.Request(f"{realm}?{query}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class OciFixtureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-oci-fixture-test-")
        started = time.monotonic()
        cls.built = moi.build(os.path.join(cls.work, "images"))
        cls.images = cls.built["images"]
        cls.build_seconds = time.monotonic() - started
        cls.registries = []

    @classmethod
    def tearDownClass(cls):
        for r in cls.registries:
            r.close()
        if os.environ.get("KEEP"):
            print(f"\nkept {cls.work}", file=sys.stderr)
        else:
            shutil.rmtree(cls.work, ignore_errors=True)

    def registry(self, mode, **kwargs):
        r = Registry(mode, **kwargs)
        self.registries.append(r)
        return r

    def out(self, name):
        return os.path.join(self.work, name)

    def push_all(self, reg):
        """busybox (OCI), multi (OCI index, --all), schema2 (busybox converted with --format
        v2s2 at push time) and multi_schema2 (from its skopeo dir:); returns the digests."""
        imgs = self.images
        digests = {
            "busybox": reg.push(imgs["busybox"]["layout"], "latest", "busybox:latest"),
            "multi": reg.push(imgs["multi"]["layout"], "latest", "multi:latest"),
            "schema2": reg.push(imgs["busybox"]["layout"], "latest", "schema2:latest", fmt="v2s2"),
            "multi_schema2": reg.push(imgs["multi_schema2"]["layout"], "latest", "multi_schema2:latest"),
        }
        for name, digest in digests.items():
            self.assertEqual(digest, imgs[name]["digest"], f"{name}: pushed digest vs built")
        return digests

    # ---- the images ----

    def test_images_are_deterministic_and_well_formed(self):
        again = moi.build(self.out("images-again"))["images"]
        for name, image in self.images.items():
            self.assertEqual(again[name]["digest"], image["digest"], name)
            self.assertEqual(again[name]["blobs"], image["blobs"], name)
        bb = self.images["busybox"]
        self.assertEqual((bb["kind"], bb["media_type"], bb["platform"]),
                         ("oci-manifest", moi.OCI_MANIFEST, "linux/amd64"), bb)
        self.assertEqual(len(bb["layers"]), 1, bb)
        config = moi.read_blob_json(bb["layout"], bb["config"]["digest"])
        self.assertEqual(config["config"]["Cmd"], ["/bin/sh"], config)
        layer = os.path.join(bb["layout"], "blobs", "sha256", bb["layers"][0]["digest"][7:])
        with tarfile.open(layer, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
        self.assertTrue(members["bin/busybox"].isfile(), sorted(members))
        for applet in ("sh", "echo", "cat", "true"):
            self.assertEqual(members[f"bin/{applet}"].linkname, "busybox", sorted(members))
        self.assertIn("etc/os-release", members)

        multi = self.images["multi"]
        self.assertEqual((multi["kind"], multi["media_type"]), ("oci-index", moi.OCI_INDEX), multi)
        amd, arm = multi["manifests"]["linux/amd64"], multi["manifests"]["linux/arm64"]
        self.assertEqual(amd["layers"][0], arm["layers"][0], "the base layer is shared")
        self.assertNotEqual(amd["layers"][1]["digest"], arm["layers"][1]["digest"])
        self.assertNotEqual(amd["config"]["digest"], arm["config"]["digest"])
        self.assertEqual(len(multi["blobs"]), 5, multi["blobs"])

        s2 = self.images["schema2"]
        self.assertEqual(s2["media_type"], moi.DOCKER_MANIFEST, s2)
        self.assertEqual(s2["config"]["media_type"], moi.DOCKER_CONFIG, s2)
        self.assertEqual(s2["blobs"], bb["blobs"], "v2s2 conversion keeps the blobs")
        self.assertNotEqual(s2["digest"], bb["digest"])
        ml = self.images["multi_schema2"]
        self.assertEqual(ml["media_type"], moi.DOCKER_MANIFEST_LIST, ml)
        self.assertEqual(ml["blobs"], multi["blobs"], ml)
        self.assertLess(self.build_seconds, 20, "building the images")

    def test_big_layer(self):
        big = moi.build(self.out("images-big"), big_bytes=3_000_000)["images"]["big"]
        self.assertEqual(len(big["layers"]), 2, big)
        self.assertGreater(big["layers"][1]["size"], 3_000_000, "random data does not compress")
        self.assertEqual(big["layers"][0], self.images["busybox"]["layers"][0])
        with self.registry("open") as reg:
            self.assertEqual(reg.push(big["layout"], "latest", "big:latest"), big["digest"])
            self.assertEqual(reg.pull("big:latest", "dir:" + self.out("big-pulled")), big["digest"])
            self.assertEqual(reg.count("GET", "/v2/big/blobs/" + big["layers"][1]["digest"]), 1,
                             reg.entries()[-6:])

    # ---- open ----

    def test_open_push_inspect_pull_and_count(self):
        reg = self.registry("open")
        self.assertIsNone(reg.creds)
        self.push_all(reg)
        expected = {"busybox": moi.OCI_MANIFEST, "multi": moi.OCI_INDEX,
                    "schema2": moi.DOCKER_MANIFEST, "multi_schema2": moi.DOCKER_MANIFEST_LIST}
        for name, media_type in expected.items():
            raw = reg.inspect_raw(f"{name}:latest")
            self.assertEqual(oci_registry.digest_of(raw), self.images[name]["digest"], name)
            # umoci writes no "mediaType" into its manifests (OCI makes it optional): the
            # registry's Content-Type is what says what it is.
            self.assertEqual(json.loads(raw).get("mediaType"),
                             None if name == "busybox" else media_type, f"{name}: {raw[:200]}")
            status, headers, _ = http_get(f"{reg.url}/v2/{name}/manifests/latest",
                                          {"Accept": ALL_MANIFEST_TYPES}, "HEAD")
            self.assertEqual((status, headers.get("Content-Type")), (200, media_type), name)

        # Pull back out; the digests of what skopeo wrote match what was built.
        mark = reg.mark()
        bb = self.images["busybox"]
        got = reg.pull("busybox:latest", f"oci:{self.out('pulled-busybox')}:latest")
        self.assertEqual(got, bb["digest"])
        for blob in bb["blobs"]:
            self.assertEqual(reg.count("GET", f"/v2/busybox/blobs/{blob}", since=mark), 1,
                             [(e["method"], e["uri"]) for e in reg.entries(mark)])
        self.assertEqual(reg.count("GET", "/v2/busybox/manifests/latest", since=mark), 1)
        self.assertEqual(reg.count("GET", "/v2/multi/", since=mark), 0)
        entry = reg.entries(mark)[-1]
        self.assertEqual((entry["status"], entry["user_agent"][:6]), (200, "skopeo"), entry)

        mark = reg.mark()
        self.assertEqual(reg.pull("multi:latest", f"oci:{self.out('pulled-multi')}:latest"),
                         self.images["multi"]["digest"])
        for blob in self.images["multi"]["blobs"]:
            self.assertEqual(reg.count("GET", f"/v2/multi/blobs/{blob}", since=mark), 1, blob)
        for name in ("schema2", "multi_schema2"):  # dir: keeps Docker manifests as they are
            self.assertEqual(reg.pull(f"{name}:latest", "dir:" + self.out(f"pulled-{name}")),
                             self.images[name]["digest"], name)
        # One platform only, without --all: skopeo picks linux/amd64 from the index.
        self.assertEqual(reg.pull("multi:latest", "dir:" + self.out("pulled-multi-amd64"),
                                  all_platforms=False),
                         self.images["multi"]["manifests"]["linux/amd64"]["digest"])

    def test_registry_manifest_accept_handling(self):
        """What docker-registry 2.8 does with Accept (a proxy in front must forward it)."""
        reg = self.registry("open")
        self.push_all(reg)
        base = reg.url + "/v2/"

        def get(name, ref, accept=None, method="GET"):
            status, headers, body = http_get(f"{base}{name}/manifests/{ref}",
                                             {"Accept": accept} if accept else {}, method)
            return status, headers.get("Content-Type"), headers.get("Docker-Content-Digest"), body

        bb, multi, s2 = self.images["busybox"], self.images["multi"], self.images["schema2"]
        # Everything accepted: each manifest as pushed.
        for name in ("busybox", "multi", "schema2", "multi_schema2"):
            image = self.images[name]
            status, ctype, digest, body = get(name, "latest", ALL_MANIFEST_TYPES)
            self.assertEqual((status, ctype, digest), (200, image["media_type"], image["digest"]), body[:200])
        # OCI manifests and indexes: 404 MANIFEST_UNKNOWN unless Accept names their type --
        # even */*, even by digest.
        for name, image in (("busybox", bb), ("multi", multi)):
            for accept in (None, "*/*", moi.DOCKER_MANIFEST):
                for ref in ("latest", image["digest"]):
                    status, _, _, body = get(name, ref, accept)
                    self.assertEqual(status, 404, f"{name}@{ref} Accept {accept}: {body[:200]}")
                    self.assertIn(b"MANIFEST_UNKNOWN", body)
        # Docker schema 2 by tag without a schema 2 Accept: converted to a signed schema 1
        # manifest (another digest); by digest: served as is.
        status, ctype, digest, _ = get("schema2", "latest", "*/*")
        self.assertEqual((status, ctype), (200, "application/vnd.docker.distribution.manifest.v1+prettyjws"))
        self.assertNotEqual(digest, s2["digest"])
        status, ctype, digest, _ = get("schema2", s2["digest"])
        self.assertEqual((status, ctype, digest), (200, moi.DOCKER_MANIFEST, s2["digest"]))
        # HEAD answers like GET, without a body.
        status, ctype, digest, body = get("busybox", "latest", moi.OCI_MANIFEST, "HEAD")
        self.assertEqual((status, ctype, digest, body), (200, moi.OCI_MANIFEST, bb["digest"], b""))
        # Blobs need no Accept.
        layer = bb["layers"][0]
        status, headers, body = http_get(f"{base}busybox/blobs/{layer['digest']}")
        self.assertEqual((status, len(body)), (200, layer["size"]))
        self.assertEqual(oci_registry.digest_of(body), layer["digest"])

    def test_restart_on_same_storage(self):
        reg = self.registry("open")
        reg.push(self.images["busybox"]["layout"], "latest", "busybox:latest")
        port, digest = reg.port, self.images["busybox"]["digest"]
        reg.stop()
        self.assertFalse(reg.running())
        with self.assertRaises(OSError):
            http_get(reg.url + "/v2/")
        reg.start()
        self.assertEqual(reg.port, port)
        self.assertEqual(oci_registry.digest_of(reg.inspect_raw("busybox:latest")), digest)
        self.assertEqual(reg.count("PUT", "/v2/busybox/manifests/latest"), 1,
                         "the access log spans restarts")

    # ---- htpasswd ----

    def test_htpasswd(self):
        reg = self.registry("htpasswd")
        self.assertEqual(reg.creds, f"{oci_registry.DEFAULT_USER}:{oci_registry.DEFAULT_PASSWORD}")
        status, headers, _ = http_get(reg.url + "/v2/")
        self.assertEqual((status, headers.get("WWW-Authenticate")),
                         (401, 'Basic realm="pantry-test-registry"'))
        self.push_all(reg)
        raw = reg.inspect_raw("multi:latest")
        self.assertEqual(oci_registry.digest_of(raw), self.images["multi"]["digest"])
        with self.assertRaisesRegex(AssertionError, "unauthorized"):
            reg.inspect_raw("busybox:latest", creds=None)
        with self.assertRaisesRegex(AssertionError, "unauthorized"):
            reg.inspect_raw("busybox:latest", creds="pantry:wrong")
        mark = reg.mark()
        self.assertEqual(reg.pull("busybox:latest", "dir:" + self.out("htpasswd-busybox")),
                         self.images["busybox"]["digest"])
        layer = self.images["busybox"]["layers"][0]["digest"]
        self.assertEqual(reg.count("GET", f"/blobs/{layer}", status=200, since=mark), 1,
                         reg.entries(mark))

    # ---- token ----

    def test_token_auth_push_pull_and_token_reuse(self):
        reg = self.registry("token")
        status, headers, _ = http_get(reg.url + "/v2/busybox/manifests/latest")
        self.assertEqual(status, 401)
        self.assertEqual(headers.get("WWW-Authenticate"),
                         f'Bearer realm="{reg.tokens.realm}",service="{oci_registry.SERVICE}",'
                         f'scope="repository:busybox:pull"')
        self.push_all(reg)
        pushes = reg.tokens.requests()
        self.assertTrue(pushes and all(r["user"] == oci_registry.DEFAULT_USER for r in pushes), pushes)
        self.assertTrue(any("push" in g["actions"] for r in pushes for g in r["granted"]), pushes)

        # One skopeo pull: one token, reused for the manifest and every blob.
        tokens, mark = reg.tokens.count(), reg.mark()
        self.assertEqual(reg.pull("busybox:latest", "dir:" + self.out("token-busybox")),
                         self.images["busybox"]["digest"])
        authorized_gets = reg.count("GET", "/v2/busybox/", status=200, since=mark)
        self.assertEqual(authorized_gets, 3, reg.entries(mark))  # manifest, config, layer
        self.assertEqual(reg.tokens.count() - tokens, 1, reg.tokens.requests()[tokens:])
        last = reg.tokens.requests()[-1]
        self.assertEqual((last["scopes"], last["granted"]),
                         (["repository:busybox:pull"],
                          [{"type": "repository", "name": "busybox", "actions": ["pull"]}]), last)

        # Anonymous: the token server says 401, so does skopeo.
        with self.assertRaisesRegex(AssertionError, "unauthorized|401"):
            reg.inspect_raw("busybox:latest", creds=None)
        self.assertEqual(reg.tokens.requests()[-1]["user"], None)
        self.assertEqual(reg.tokens.requests()[-1]["status"], 401)
        with self.assertRaisesRegex(AssertionError, "unauthorized|401"):
            reg.inspect_raw("busybox:latest", creds="pantry:wrong")

        # The token itself: ES256 with an x5c chain; the claims the registry checks.
        status, body = fetch_token(reg.tokens.realm,
                                   f"service={oci_registry.SERVICE}&scope=repository:multi:pull"
                                   f"&scope=repository:busybox:pull,push", reg.creds)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["token"], body["access_token"])
        self.assertEqual(body["expires_in"], 300)
        header, claims = jwt_parts(body["token"])
        self.assertEqual((header["alg"], len(header["x5c"])), ("ES256", 2), header)
        self.assertEqual((claims["iss"], claims["aud"], claims["sub"]),
                         (oci_registry.ISSUER, oci_registry.SERVICE, oci_registry.DEFAULT_USER))
        self.assertEqual(claims["exp"] - claims["iat"], 300)
        self.assertEqual(claims["access"],
                         [{"type": "repository", "name": "multi", "actions": ["pull"]},
                          {"type": "repository", "name": "busybox", "actions": ["pull", "push"]}])
        # ... and the registry takes it as is.
        status, _, _ = http_get(f"{reg.url}/v2/multi/manifests/latest",
                                {"Authorization": "Bearer " + body["token"], "Accept": moi.OCI_INDEX})
        self.assertEqual(status, 200)
        self.assertEqual(fetch_token(reg.tokens.realm, "service=other&scope=repository:multi:pull",
                                     reg.creds)[0], 400)

        # A failing token server fails the pull.
        reg.tokens.fail_status = 503
        try:
            with self.assertRaises(AssertionError):
                reg.inspect_raw("busybox:latest")
            self.assertEqual(reg.tokens.requests()[-1]["status"], 503)
        finally:
            reg.tokens.fail_status = None

    def test_token_anonymous_pull_and_no_expires_in(self):
        reg = self.registry("token", anonymous_pull=True, send_expires_in=False, token_ttl=120)
        reg.push(self.images["busybox"]["layout"], "latest", "busybox:latest")
        self.assertEqual(oci_registry.digest_of(reg.inspect_raw("busybox:latest", creds=None)),
                         self.images["busybox"]["digest"])
        self.assertEqual(reg.tokens.count(user=None), 1, reg.tokens.requests())
        status, body = fetch_token(reg.tokens.realm,
                                   f"service={oci_registry.SERVICE}&scope=repository:busybox:pull,push")
        self.assertEqual(status, 200, body)
        self.assertNotIn("expires_in", body)
        _, claims = jwt_parts(body["token"])
        self.assertEqual(claims["access"], [{"type": "repository", "name": "busybox", "actions": ["pull"]}])
        self.assertEqual(claims["exp"] - claims["iat"], 120)
        with self.assertRaisesRegex(AssertionError, "denied|unauthorized|authentication required"):
            reg.push(self.images["multi"]["layout"], "latest", "multi:latest", creds=None)
        # OAuth2 password grant (POST), as containerd tries first.
        form = urllib.parse.urlencode({"grant_type": "password", "username": reg.user,
                                       "password": reg.password, "service": oci_registry.SERVICE,
                                       "scope": "repository:busybox:pull", "client_id": "t"})
        with urllib.request.urlopen(reg.tokens.realm, form.encode(), timeout=30) as r:
            body = json.loads(r.read())
        self.assertEqual(sorted(body), ["access_token", "issued_at", "scope"], body)

    # ---- proxy ----

    def test_proxy_pulls_through(self):
        up = self.registry("open")
        self.push_all(up)
        proxy = self.registry("proxy", upstream=up)
        mark = up.mark()
        for name in ("busybox", "multi", "multi_schema2"):
            self.assertEqual(proxy.pull(f"{name}:latest", "dir:" + self.out(f"proxied-{name}")),
                             self.images[name]["digest"], name)
        layer = self.images["busybox"]["layers"][0]["digest"]
        # distribution's proxy GETs a cold blob twice upstream (serve + store).
        self.assertGreaterEqual(up.count("GET", f"/v2/busybox/blobs/{layer}", since=mark), 1,
                                up.entries(mark))
        self.assertEqual(proxy.count("GET", f"/v2/busybox/blobs/{layer}"), 1)

        # Warm: the proxy checks the tag upstream (HEAD) but fetches no blob again.
        mark = up.mark()
        proxy.pull("busybox:latest", "dir:" + self.out("proxied-busybox-2"))
        self.assertEqual(up.count("GET", "/blobs/", since=mark), 0, up.entries(mark))
        # Upstream down: the proxy still serves what it has.
        up.stop()
        try:
            self.assertEqual(proxy.pull("busybox:latest", "dir:" + self.out("proxied-busybox-3")),
                             self.images["busybox"]["digest"])
        finally:
            up.start()

    def test_proxy_of_a_token_upstream(self):
        up = self.registry("token")
        up.push(self.images["busybox"]["layout"], "latest", "busybox:latest")
        proxy = self.registry("proxy", upstream=up)  # takes up's user and password
        tokens = up.tokens.count()
        self.assertEqual(proxy.pull("busybox:latest", "dir:" + self.out("proxied-token")),
                         self.images["busybox"]["digest"])
        self.assertGreaterEqual(up.tokens.count(user=up.user) - tokens, 1, up.tokens.requests())

    def test_proxy_refusals(self):
        up = self.registry("open")
        up.stop()
        with self.assertRaisesRegex(RuntimeError, "does not answer"):
            self.registry("proxy", upstream=up)
        up.start()
        with self.assertRaisesRegex(ValueError, "htpasswd"):
            self.registry("proxy", upstream=self.registry("htpasswd"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
