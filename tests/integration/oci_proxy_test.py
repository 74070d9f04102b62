#!/usr/bin/python3
"""The container registry through pantry, with skopeo and raw HTTP, in front of a real
docker-registry upstream (tests/fixtures/oci_registry.py) holding images built offline
(tests/fixtures/make_oci_images.py): every manifest kind byte-exact, routing by upstream prefix,
?ns= and the default upstream with library/, Accept negotiation against the cached tag, a
platform out of an index by digest, tag_ttl revalidation with HEAD, blobs only under
repositories that reference them, Range, tags/list, hosted pushes (monolithic, chunked, mount
from hosted and from proxied repositories, manifest checks, login through pantry's token endpoint), `pantry cache gc` of unreferenced
hosted blobs, OCI 1.1 referrers (hosted: pushed with skopeo and HTTP; proxied: docker-registry 2.8
has no referrers API, so pantry reads the referrers tag schema), and finally every pull again
with the upstream stopped.

    /usr/bin/python3 tests/integration/oci_proxy_test.py build/asan/cli/pantry
"""

import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_oci_images as moi  # noqa: E402
import oci_registry  # noqa: E402
import pantry_serve  # noqa: E402

PANTRY = None
USER = "ci"
TOKEN = "ci-token-0123456789abcdef"
TAG_TTL = 2  # seconds
ALL_TYPES = ", ".join([moi.OCI_INDEX, moi.OCI_MANIFEST, moi.DOCKER_MANIFEST_LIST,
                       moi.DOCKER_MANIFEST])


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def error_code(self):
        try:
            return self.json()["errors"][0]["code"]
        except (ValueError, KeyError, IndexError):
            return None

    def __repr__(self):
        return f"<{self.status} {dict(self.headers)} {self.body[:300]!r}>"


class OciProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-oci-proxy-test-")
        cls.images = moi.build(os.path.join(cls.work, "images"))["images"]
        cls.reg = oci_registry.Registry("open", os.path.join(cls.work, "upstream"))
        imgs = cls.images
        cls.pushed = {
            "library/busybox:1.36": cls.reg.push(imgs["busybox"]["layout"], "latest",
                                                 "library/busybox:1.36"),
            "org/multi:latest": cls.reg.push(imgs["multi"]["layout"], "latest",
                                             "org/multi:latest"),
            "org/schema2:latest": cls.reg.push(imgs["busybox"]["layout"], "latest",
                                               "org/schema2:latest", fmt="v2s2"),
            "org/list:latest": cls.reg.push(imgs["multi_schema2"]["layout"], "latest",
                                            "org/list:latest"),
        }
        cls.pantry = cls.start_pantry(os.path.join(cls.work, "pantry"))
        cls.host = f"127.0.0.1:{cls.pantry.port}"

    @classmethod
    def start_pantry(cls, workdir):
        return pantry_serve.Pantry(PANTRY, workdir, "http://127.0.0.1:9/simple/", oci=f"""\
  default_upstream: docker.io
  upstreams:
    - {{name: docker.io, url: "{cls.reg.url}"}}
    - {{name: registry.example, url: "{cls.reg.url}"}}
  tag_ttl: {TAG_TTL}s
  hosted:
    prefix: local/
    users: [{{name: {USER}, token: "{TOKEN}"}}]
""")

    @classmethod
    def tearDownClass(cls):
        cls.pantry.stop()
        cls.reg.close()
        if os.environ.get("KEEP"):
            print(f"\nkept {cls.work}", file=sys.stderr)
        else:
            shutil.rmtree(cls.work, ignore_errors=True)

    # ---- helpers ----

    def api(self, method, path, headers=(), body=None, pantry=None):
        """A raw request to pantry; `headers` is a list of pairs (a name may repeat)."""
        p = pantry or self.pantry
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=60)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        except (OSError, http.client.HTTPException) as e:
            raise AssertionError(f"{method} {path}: {e!r}\n--- pantry log:\n{p.tail()}") from None
        finally:
            conn.close()

    def get_manifest(self, path, accept=ALL_TYPES, method="GET"):
        return self.api(method, path, [("Accept", accept)])

    def skopeo(self, *args):
        try:
            return oci_registry.skopeo(*args)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- pantry log:\n{self.pantry.tail()}") from None

    def ref(self, name):
        return f"docker://{self.host}/{name}"

    def upstream_manifest_gets(self, repo, since):
        return self.reg.count("GET", f"/v2/{repo}/manifests/", since=since)

    # ---- pull-through ----

    def test_every_manifest_kind_byte_exact_through_skopeo(self):
        cases = [("busybox:1.36", "library/busybox:1.36", moi.OCI_MANIFEST),
                 ("org/multi:latest", "org/multi:latest", moi.OCI_INDEX),
                 ("org/schema2:latest", "org/schema2:latest", moi.DOCKER_MANIFEST),
                 ("org/list:latest", "org/list:latest", moi.DOCKER_MANIFEST_LIST)]
        for client_name, upstream_name, media_type in cases:
            with self.subTest(client_name):
                raw = self.skopeo("inspect", "--tls-verify=false", "--raw",
                                  self.ref(client_name))
                self.assertEqual(sha256(raw), self.pushed[upstream_name],
                                 f"{client_name}: manifest bytes through pantry differ")
                self.assertEqual(raw, self.reg.inspect_raw(upstream_name))
                name, tag = client_name.split(":")
                r = self.get_manifest(f"/v2/{name}/manifests/{tag}")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.headers["Content-Type"], media_type, r)
                self.assertEqual(r.headers["Docker-Content-Digest"], self.pushed[upstream_name])
                self.assertEqual(r.headers["Docker-Distribution-API-Version"], "registry/2.0")
                self.assertEqual(int(r.headers["Content-Length"]), len(raw))
                dest = os.path.join(self.work, "copy-" + name.replace("/", "_"))
                self.skopeo("copy", "--all", "--src-tls-verify=false", self.ref(client_name),
                            f"dir:{dest}")
                with open(os.path.join(dest, "manifest.json"), "rb") as f:
                    self.assertEqual(sha256(f.read()), self.pushed[upstream_name])

    def test_routing_prefix_ns_default_and_library(self):
        want = self.pushed["library/busybox:1.36"]
        for path in ["/v2/busybox/manifests/1.36",
                     "/v2/library/busybox/manifests/1.36",
                     "/v2/docker.io/library/busybox/manifests/1.36",
                     "/v2/docker.io/busybox/manifests/1.36",
                     "/v2/registry.example/library/busybox/manifests/1.36",
                     "/v2/library/busybox/manifests/1.36?ns=registry.example",
                     "/v2/library/busybox/manifests/1.36?ns=docker.io"]:
            with self.subTest(path):
                r = self.get_manifest(path)
                self.assertEqual((r.status, r.headers["Docker-Content-Digest"]), (200, want), r)
        r = self.get_manifest("/v2/library/busybox/manifests/1.36?ns=quay.io")
        self.assertEqual((r.status, r.error_code()), (404, "NAME_UNKNOWN"), r)
        self.assertIn("quay.io", r.json()["errors"][0]["message"])
        r = self.get_manifest("/v2/")
        self.assertEqual(r.status, 401, "users are configured: /v2/ challenges")
        self.assertIn('Bearer realm="http://127.0.0.1:', r.headers["WWW-Authenticate"])

    def test_accept_decides_whether_the_cached_tag_answers(self):
        path = "/v2/org/schema2/manifests/latest"
        r = self.api("GET", path, [("Accept", moi.DOCKER_MANIFEST), ("Accept", moi.OCI_MANIFEST)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["Content-Type"], moi.DOCKER_MANIFEST)
        mark = self.reg.mark()
        # The same types as one comma-joined line (containerd, docker): served from the cache.
        r = self.get_manifest(path, f"{moi.OCI_MANIFEST}, {moi.DOCKER_MANIFEST}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.upstream_manifest_gets("org/schema2", mark), 0,
                         self.reg.entries(mark))
        # A client that does not accept the cached type is not answered from the cache: pantry
        # asks upstream with that client's Accept (docker-registry then has no OCI manifest).
        r = self.get_manifest(path, moi.OCI_MANIFEST)
        self.assertEqual(self.upstream_manifest_gets("org/schema2", mark), 1,
                         self.reg.entries(mark))
        self.assertNotEqual(r.headers.get("Content-Type"), moi.DOCKER_MANIFEST, r)

    def test_one_platform_out_of_an_index_by_digest(self):
        r = self.get_manifest("/v2/org/multi/manifests/latest")
        self.assertEqual(r.status, 200, r)
        index = r.json()
        arm = [m for m in index["manifests"] if m["platform"]["architecture"] == "arm64"]
        self.assertEqual(len(arm), 1, index)
        digest = arm[0]["digest"]
        m = self.get_manifest(f"/v2/org/multi/manifests/{digest}", moi.OCI_MANIFEST)
        self.assertEqual((m.status, sha256(m.body)), (200, digest), m)
        for blob in [m.json()["config"]] + m.json()["layers"]:
            b = self.api("GET", f"/v2/org/multi/blobs/{blob['digest']}")
            self.assertEqual((b.status, sha256(b.body), len(b.body)),
                             (200, blob["digest"], blob["size"]), b.headers)
            self.assertEqual(b.headers["Docker-Content-Digest"], blob["digest"])
        # HEAD by digest: headers, no body.
        h = self.get_manifest(f"/v2/org/multi/manifests/{digest}", moi.OCI_MANIFEST, "HEAD")
        self.assertEqual((h.status, h.body, h.headers["Docker-Content-Digest"]),
                         (200, b"", digest))
        self.assertEqual(int(h.headers["Content-Length"]), arm[0]["size"])

    def test_tag_ttl_revalidates_with_head_and_follows_a_moved_tag(self):
        repo = "org/moving"
        self.reg.push(self.images["busybox"]["layout"], "latest", f"{repo}:v1")
        first = self.get_manifest(f"/v2/{repo}/manifests/v1")
        self.assertEqual(first.status, 200, first)
        mark = self.reg.mark()
        again = self.get_manifest(f"/v2/{repo}/manifests/v1")
        self.assertEqual(self.reg.count(None, f"/v2/{repo}/manifests/", since=mark), 0,
                         "within tag_ttl the tag is answered from the cache")
        time.sleep(TAG_TTL + 0.5)
        again = self.get_manifest(f"/v2/{repo}/manifests/v1")
        self.assertEqual(again.headers["Docker-Content-Digest"],
                         first.headers["Docker-Content-Digest"])
        self.assertEqual(self.reg.count("HEAD", f"/v2/{repo}/manifests/v1", since=mark), 1,
                         self.reg.entries(mark))
        self.assertEqual(self.reg.count("GET", f"/v2/{repo}/manifests/v1", since=mark), 0,
                         "an unchanged tag costs a HEAD, not a GET")
        # The tag moves upstream: after tag_ttl pantry serves the new manifest.
        moved = self.reg.push(self.images["multi"]["layout"], "latest", f"{repo}:v1")
        time.sleep(TAG_TTL + 0.5)
        now = self.get_manifest(f"/v2/{repo}/manifests/v1")
        self.assertEqual((now.status, now.headers["Docker-Content-Digest"]), (200, moved), now)

    def test_blob_only_under_a_repository_that_has_it(self):
        bb = self.images["busybox"]
        self.skopeo("inspect", "--tls-verify=false", "--raw", self.ref("busybox:1.36"))
        layer = bb["layers"][0]["digest"]
        ok = self.api("GET", f"/v2/library/busybox/blobs/{layer}")
        self.assertEqual((ok.status, sha256(ok.body)), (200, layer))
        # org/multi never had this layer: pantry has it cached, but asks upstream, which says no.
        mark = self.reg.mark()
        r = self.api("GET", f"/v2/org/multi/blobs/{layer}")
        self.assertEqual((r.status, r.error_code()), (404, "BLOB_UNKNOWN"), r)
        self.assertEqual(self.reg.count("HEAD", f"/v2/org/multi/blobs/{layer}", since=mark), 1)

    def test_range_and_conditional_requests_on_blobs(self):
        self.get_manifest("/v2/busybox/manifests/1.36")
        layer = self.images["busybox"]["layers"][0]["digest"]
        whole = self.api("GET", f"/v2/library/busybox/blobs/{layer}")
        self.assertEqual(whole.status, 200)
        part = self.api("GET", f"/v2/library/busybox/blobs/{layer}", [("Range", "bytes=10-19")])
        self.assertEqual((part.status, part.body), (206, whole.body[10:20]), part.headers)
        self.assertEqual(part.headers["Content-Range"], f"bytes 10-19/{len(whole.body)}")
        etag = whole.headers["ETag"]
        cond = self.api("GET", f"/v2/library/busybox/blobs/{layer}", [("If-None-Match", etag)])
        self.assertEqual(cond.status, 304)

    def test_tags_list_with_pagination(self):
        self.reg.push(self.images["busybox"]["layout"], "latest", "org/tags:a")
        self.reg.push(self.images["busybox"]["layout"], "latest", "org/tags:b")
        r = self.api("GET", "/v2/org/tags/tags/list")
        self.assertEqual((r.status, r.json()["tags"]), (200, ["a", "b"]), r)
        first = self.api("GET", "/v2/docker.io/org/tags/tags/list?n=1")
        self.assertEqual(first.json()["tags"], ["a"], first)
        self.assertEqual(first.headers["Link"],
                         '</v2/docker.io/org/tags/tags/list?n=1&last=a>; rel="next"')
        second = self.api("GET", "/v2/docker.io/org/tags/tags/list?n=1&last=a")
        self.assertEqual(second.json()["tags"], ["b"], second)

    def test_bad_requests_get_the_spec_error_codes(self):
        mark = self.reg.mark()
        for path, status, code in [
                ("/v2/Bad/manifests/latest", 400, "NAME_INVALID"),
                ("/v2/a/blobs/sha256:xyz", 400, "DIGEST_INVALID"),
                # distribution answers a read by a reference that is no tag as unknown.
                ("/v2/a/manifests/-bad", 404, "MANIFEST_UNKNOWN"),
                ("/v2/a/manifests/.INVALID_MANIFEST_NAME", 404, "MANIFEST_UNKNOWN"),
                ("/v2/a/b", 404, "NAME_UNKNOWN"),
                ("/v2/org/none/manifests/latest", 404, "MANIFEST_UNKNOWN")]:
            with self.subTest(path):
                r = self.get_manifest(path)
                self.assertEqual((r.status, r.error_code()), (status, code), r)
        self.assertEqual(self.reg.count(None, "", since=mark), 1,
                         f"only the well-formed request went upstream: {self.reg.entries(mark)}")
        put = self.api("PUT", "/v2/busybox/manifests/x", [("Authorization", basic(USER, TOKEN))],
                       b"{}")
        self.assertEqual((put.status, put.error_code()), (405, "UNSUPPORTED"), put)

    # ---- hosted ----

    def test_hosted_push_and_pull_keep_the_digest(self):
        creds = f"{USER}:{TOKEN}"
        for image, name in [("busybox", "local/app:1"), ("multi", "local/multi:1")]:
            with self.subTest(name):
                src = oci_registry.source_ref(self.images[image]["layout"])
                self.skopeo("copy", "--all", "--dest-tls-verify=false", "--dest-creds", creds,
                            src, self.ref(name))
                raw = self.skopeo("inspect", "--tls-verify=false", "--raw", self.ref(name))
                self.assertEqual(sha256(raw), self.images[image]["digest"])
                dest = os.path.join(self.work, "hosted-out-" + image)
                self.skopeo("copy", "--all", "--src-tls-verify=false", self.ref(name),
                            f"oci:{dest}:x")
                with open(os.path.join(dest, "index.json")) as f:
                    self.assertEqual(json.load(f)["manifests"][0]["digest"],
                                     self.images[image]["digest"])
        tags = self.api("GET", "/v2/local/app/tags/list")
        self.assertEqual(tags.json(), {"name": "local/app", "tags": ["1"]})

    def test_hosted_push_needs_a_user(self):
        src = oci_registry.source_ref(self.images["busybox"]["layout"])
        for creds in [None, f"{USER}:wrong-token-000000000"]:
            args = ["copy", "--dest-tls-verify=false"]
            if creds:
                args += ["--dest-creds", creds]
            r = subprocess.run(["skopeo", *args, src, self.ref("local/denied:1")],
                               capture_output=True, text=True, timeout=120)
            self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("unauthorized", (r.stdout + r.stderr).lower())
        r = self.api("POST", "/v2/local/denied/blobs/uploads/")
        self.assertEqual((r.status, r.error_code()), (401, "UNAUTHORIZED"), r)
        self.assertIn('scope="repository:local/denied:pull,push"', r.headers["WWW-Authenticate"])

    def test_login_through_the_token_endpoint(self):
        bad = self.api("GET", "/auth/token?service=pantry", [("Authorization", basic(USER, "x"))])
        self.assertEqual(bad.status, 401, bad)
        good = self.api("GET", "/auth/token?service=pantry&scope=repository:local/t:pull,push",
                        [("Authorization", basic(USER, TOKEN))])
        self.assertEqual(good.status, 200, good)
        token = good.json()["token"]
        self.assertEqual(self.api("GET", "/v2/", [("Authorization", f"Bearer {token}")]).status,
                         200)
        forged = token[:-1] + ("0" if token[-1] != "0" else "1")
        self.assertEqual(self.api("GET", "/v2/", [("Authorization", f"Bearer {forged}")]).status,
                         401)
        anon = self.api("GET", "/auth/token?service=pantry").json()["token"]
        self.assertEqual(self.api("GET", "/v2/", [("Authorization", f"Bearer {anon}")]).status,
                         200, "anonymous clients get a pull token")
        push = self.api("POST", "/v2/local/t/blobs/uploads/", [("Authorization", f"Bearer {anon}")])
        self.assertEqual(push.status, 401, "an anonymous token cannot push")
        push = self.api("POST", "/v2/local/t/blobs/uploads/",
                        [("Authorization", f"Bearer {token}")])
        self.assertEqual(push.status, 202, push)

    def test_hosted_chunked_upload_mount_and_manifest_checks(self):
        auth = [("Authorization", basic(USER, TOKEN))]
        data = os.urandom(300_000)
        digest = sha256(data)
        start = self.api("POST", "/v2/local/chunks/blobs/uploads/", auth)
        self.assertEqual(start.status, 202, start)
        location = start.headers["Location"]
        p1 = self.api("PATCH", location, auth + [("Content-Range", "0-99999")], data[:100_000])
        self.assertEqual((p1.status, p1.headers["Range"]), (202, "0-99999"), p1)
        gap = self.api("PATCH", location, auth + [("Content-Range", "5-10")], b"x" * 6)
        self.assertEqual(gap.status, 416, gap)
        p2 = self.api("PATCH", location, auth, data[100_000:200_000])
        self.assertEqual(p2.headers["Range"], "0-199999", p2)
        wrong = "sha256:" + "0" * 64
        bad = self.api("PUT", f"{location}?digest={wrong}", auth, data[200_000:])
        self.assertEqual((bad.status, bad.error_code()), (400, "DIGEST_INVALID"), bad)
        self.assertEqual(self.api("GET", f"/v2/local/chunks/blobs/{wrong}").status, 404)
        # The failed upload is gone; do it again, monolithically.
        mono = self.api("POST", f"/v2/local/chunks/blobs/uploads/?digest={digest}", auth, data)
        self.assertEqual((mono.status, mono.headers["Docker-Content-Digest"]), (201, digest), mono)
        got = self.api("GET", f"/v2/local/chunks/blobs/{digest}")
        self.assertEqual((got.status, sha256(got.body)), (200, digest))
        # Mount into another hosted repository without sending the bytes again.
        mount = self.api("POST", f"/v2/local/other/blobs/uploads/?mount={digest}&from=local/chunks",
                         auth)
        self.assertEqual((mount.status, mount.headers["Location"]),
                         (201, f"/v2/local/other/blobs/{digest}"), mount)
        # A manifest that references a blob the repository does not have is refused.
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        missing = {"schemaVersion": 2, "mediaType": moi.OCI_MANIFEST,
                   "config": {"mediaType": moi.OCI_CONFIG, "digest": sha256(config),
                              "size": len(config)},
                   "layers": [{"mediaType": moi.OCI_LAYER_GZIP, "digest": digest,
                               "size": len(data)}]}
        body = json.dumps(missing).encode()
        r = self.api("PUT", "/v2/local/other/manifests/v1",
                     auth + [("Content-Type", moi.OCI_MANIFEST)], body)
        self.assertEqual((r.status, r.error_code()), (400, "MANIFEST_BLOB_UNKNOWN"), r)
        self.assertIn(sha256(config), r.json()["errors"][0]["message"])
        cfg = self.api("POST", f"/v2/local/other/blobs/uploads/?digest={sha256(config)}", auth,
                       config)
        self.assertEqual(cfg.status, 201, cfg)
        r = self.api("PUT", "/v2/local/other/manifests/v1",
                     auth + [("Content-Type", moi.OCI_MANIFEST)], body)
        self.assertEqual((r.status, r.headers["Docker-Content-Digest"]), (201, sha256(body)), r)
        # By digest, the body must match it.
        r = self.api("PUT", f"/v2/local/other/manifests/{wrong}",
                     auth + [("Content-Type", moi.OCI_MANIFEST)], body)
        self.assertEqual((r.status, r.error_code()), (400, "DIGEST_INVALID"), r)
        # Delete by digest takes the tag with it.
        d = self.api("DELETE", f"/v2/local/other/manifests/{sha256(body)}", auth)
        self.assertEqual(d.status, 202, d)
        self.assertEqual(self.get_manifest("/v2/local/other/manifests/v1").status, 404)

    def test_hosted_image_on_a_proxied_base_mounts_the_base_layers(self):
        auth = [("Authorization", basic(USER, TOKEN))]
        bb = self.images["busybox"]
        self.skopeo("inspect", "--tls-verify=false", "--raw", self.ref("busybox:1.36"))
        blobs = [bb["config"]["digest"]] + [layer["digest"] for layer in bb["layers"]]
        # The proxied repository's cached manifest references these blobs: mounted, not uploaded,
        # under the name as the client wrote it (default upstream, or the upstream's prefix).
        for i, digest in enumerate(blobs):
            source = "busybox" if i % 2 == 0 else "docker.io/library/busybox"
            r = self.api("POST", f"/v2/local/rebased/blobs/uploads/?mount={digest}&from={source}",
                         auth)
            self.assertEqual((r.status, r.headers["Location"]),
                             (201, f"/v2/local/rebased/blobs/{digest}"), (source, r))
        # org/multi's manifests never referenced the busybox layer: an ordinary upload starts.
        layer = bb["layers"][0]["digest"]
        r = self.api("POST", f"/v2/local/rebased2/blobs/uploads/?mount={layer}&from=org/multi",
                     auth)
        self.assertEqual(r.status, 202, r)
        self.assertIn("/v2/local/rebased2/blobs/uploads/", r.headers["Location"])
        # The mounted blobs are the hosted repository's own: its manifest PUT accepts them, and
        # they are served under its name.
        manifest = self.api("GET", "/v2/busybox/manifests/1.36", [("Accept", moi.OCI_MANIFEST)])
        self.assertEqual(manifest.status, 200, manifest)
        put = self.api("PUT", "/v2/local/rebased/manifests/1",
                       auth + [("Content-Type", moi.OCI_MANIFEST)], manifest.body)
        self.assertEqual((put.status, put.headers["Docker-Content-Digest"]),
                         (201, bb["digest"]), put)
        got = self.api("GET", f"/v2/local/rebased/blobs/{layer}")
        self.assertEqual((got.status, sha256(got.body)), (200, layer))

    def test_skopeo_copy_from_a_proxied_name_into_a_hosted_one_mounts(self):
        # skopeo offers a mount for a layer its blob-info cache has seen at a repository of the
        # same registry: pulled once through pantry, every layer is mounted, none uploaded
        # (skopeo uploads the config blob either way).
        pulled = os.path.join(self.work, "schema2-pulled")
        self.skopeo("copy", "--src-tls-verify=false", self.ref("org/schema2:latest"),
                    f"oci:{pulled}:x")
        self.skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--dest-creds",
                    f"{USER}:{TOKEN}", self.ref("org/schema2:latest"),
                    self.ref("local/from-proxied:1"))
        log = self.pantry.tail(5000)
        layers = [layer["digest"] for layer in self.images["busybox"]["layers"]]
        mounted = [d for d in layers if f"{d} mounted from org/schema2 into local/from-proxied"
                   in log]
        self.assertEqual(mounted, layers, log)
        raw = self.skopeo("inspect", "--tls-verify=false", "--raw",
                          self.ref("local/from-proxied:1"))
        upstream = self.skopeo("inspect", "--tls-verify=false", "--raw",
                               self.ref("org/schema2:latest"))
        self.assertEqual(sha256(raw), sha256(upstream))


    # ---- OCI 1.1 referrers ----

    @staticmethod
    def http(base, method, path, headers=(), body=None):
        """A raw request to `base` ("http://host:port"), as api() does for pantry."""
        host, port = base.split("//", 1)[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            conn.request(method, path, body=body, headers=dict(headers))
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def push_artifact(self, base, repo, subject_digest, subject_size, artifact_type, note,
                      auth=()):
        """Pushes an artifact manifest (its config blob first) whose subject is the given
        manifest; returns (the manifest's bytes, the PUT's response)."""
        config = json.dumps({"note": note}).encode()
        up = self.http(base, "POST", f"/v2/{repo}/blobs/uploads/", auth)
        self.assertEqual(up.status, 202, up)
        loc = up.headers["Location"]
        loc = loc.split("//", 1)[1].split("/", 1)[1] if "//" in loc else loc.lstrip("/")
        sep = "&" if "?" in loc else "?"
        put = self.http(base, "PUT", f"/{loc}{sep}digest={sha256(config)}",
                        list(auth) + [("Content-Type", "application/octet-stream")], config)
        self.assertEqual(put.status, 201, put)
        manifest = {"schemaVersion": 2, "mediaType": moi.OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.example.config.v1+json",
                               "digest": sha256(config), "size": len(config)},
                    "layers": [],
                    "subject": {"mediaType": moi.OCI_MANIFEST, "digest": subject_digest,
                                "size": subject_size},
                    "annotations": {"org.example.note": note}}
        if artifact_type:
            manifest["artifactType"] = artifact_type
        raw = json.dumps(manifest).encode()
        r = self.http(base, "PUT", f"/v2/{repo}/manifests/{sha256(raw)}",
                      list(auth) + [("Content-Type", moi.OCI_MANIFEST)], raw)
        return raw, r

    def test_referrers_of_a_hosted_image(self):
        creds = f"{USER}:{TOKEN}"
        auth = [("Authorization", basic(USER, TOKEN))]
        self.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds,
                    oci_registry.source_ref(self.images["busybox"]["layout"]),
                    self.ref("local/signed:1"))
        subject = self.images["busybox"]["digest"]
        size = len(self.skopeo("inspect", "--tls-verify=false", "--raw",
                               self.ref("local/signed:1")))
        base = f"http://{self.host}"
        sig, r = self.push_artifact(base, "local/signed", subject, size,
                                    "application/vnd.example.sig", "signed", auth)
        self.assertEqual((r.status, r.headers["OCI-Subject"]), (201, subject), r)
        sbom, r = self.push_artifact(base, "local/signed", subject, size, None, "sbom", auth)
        self.assertEqual(r.status, 201, r)

        r = self.api("GET", f"/v2/local/signed/referrers/{subject}")
        self.assertEqual((r.status, r.headers["Content-Type"]), (200, moi.OCI_INDEX), r)
        got = sorted((m["digest"], m["size"], m["mediaType"], m["artifactType"],
                      m["annotations"]["org.example.note"]) for m in r.json()["manifests"])
        self.assertEqual(got, sorted([
            (sha256(sig), len(sig), moi.OCI_MANIFEST, "application/vnd.example.sig", "signed"),
            (sha256(sbom), len(sbom), moi.OCI_MANIFEST, "application/vnd.example.config.v1+json",
             "sbom")]))
        f = self.api("GET", f"/v2/local/signed/referrers/{subject}"
                            "?artifactType=application/vnd.example.sig")
        self.assertEqual(f.headers["OCI-Filters-Applied"], "artifactType", f)
        self.assertEqual([m["digest"] for m in f.json()["manifests"]], [sha256(sig)], f)
        none = self.api("GET", "/v2/local/signed/referrers/sha256:" + "0" * 64)
        self.assertEqual((none.status, none.json()["manifests"]), (200, []), none)
        # skopeo pulls a referrer by digest like any manifest.
        raw = self.skopeo("inspect", "--tls-verify=false", "--raw",
                          self.ref(f"local/signed@{sha256(sig)}"))
        self.assertEqual(raw, sig)
        # Deleted, it leaves the list.
        d = self.api("DELETE", f"/v2/local/signed/manifests/{sha256(sig)}", auth)
        self.assertEqual(d.status, 202, d)
        r = self.api("GET", f"/v2/local/signed/referrers/{subject}")
        self.assertEqual([m["digest"] for m in r.json()["manifests"]], [sha256(sbom)], r)

    def test_referrers_of_a_proxied_image_through_the_tag_schema(self):
        # docker-registry 2.8 has no referrers API: a client keeps the list itself as an index
        # tagged sha256-<hex> (the spec's referrers tag schema), and pantry reads that tag.
        repo = "org/schema2"
        subject = self.pushed["org/schema2:latest"]
        size = len(self.reg.inspect_raw("org/schema2:latest"))
        api = self.http(self.reg.url, "GET", f"/v2/{repo}/referrers/{subject}")
        self.assertEqual(api.status, 404, f"docker-registry grew a referrers API: {api}")
        sig, r = self.push_artifact(self.reg.url, repo, subject, size,
                                    "application/vnd.example.sig", "old way")
        self.assertEqual(r.status, 201, r)
        self.assertNotIn("OCI-Subject", r.headers, "so clients fall back to the tag schema")
        index = json.dumps({"schemaVersion": 2, "mediaType": moi.OCI_INDEX, "manifests": [
            {"mediaType": moi.OCI_MANIFEST, "digest": sha256(sig), "size": len(sig),
             "artifactType": "application/vnd.example.sig",
             "annotations": {"org.example.note": "old way"}}]}).encode()
        tag = "sha256-" + subject.split(":", 1)[1]
        r = self.http(self.reg.url, "PUT", f"/v2/{repo}/manifests/{tag}",
                      [("Content-Type", moi.OCI_INDEX)], index)
        self.assertEqual(r.status, 201, r)

        mark = self.reg.mark()
        r = self.api("GET", f"/v2/{repo}/referrers/{subject}")
        self.assertEqual((r.status, r.headers["Content-Type"]), (200, moi.OCI_INDEX), r)
        self.assertEqual([(m["digest"], m["artifactType"], m["annotations"]["org.example.note"])
                          for m in r.json()["manifests"]],
                         [(sha256(sig), "application/vnd.example.sig", "old way")], r)
        self.assertEqual(self.reg.count("GET", f"/v2/{repo}/manifests/{tag}", since=mark), 1,
                         self.reg.entries(mark))
        # Cached like a tag: within tag_ttl pantry does not ask again.
        again = self.api("GET", f"/v2/{repo}/referrers/{subject}")
        self.assertEqual(again.json(), r.json())
        self.assertEqual(self.reg.count(None, "/v2/", since=mark), 2, self.reg.entries(mark))
        f = self.api("GET", f"/v2/{repo}/referrers/{subject}?artifactType=application/x.other")
        self.assertEqual((f.headers["OCI-Filters-Applied"], f.json()["manifests"]),
                         ("artifactType", []), f)
        none = self.api("GET", f"/v2/{repo}/referrers/sha256:" + "1" * 64)
        self.assertEqual((none.status, none.json()["manifests"]), (200, []), none)

    def test_referrers_herd_asks_upstream_once(self):
        # 30 clients ask at once for a list pantry has not cached: one upstream ask (the API's
        # 404, then the referrers tag's 404) answers them all, with an empty list.
        repo = "org/multi"
        subject = "sha256:" + "2" * 64
        mark = self.reg.mark()
        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            got = list(pool.map(lambda _: self.api("GET", f"/v2/{repo}/referrers/{subject}"),
                                range(30)))
        self.assertEqual({(r.status, tuple(r.json()["manifests"])) for r in got}, {(200, ())},
                         got[:3])
        asked = [(e["method"], e["uri"], e["status"]) for e in self.reg.entries(mark)]
        self.assertEqual(
            (self.reg.count("GET", f"/v2/{repo}/referrers/", since=mark),
             self.reg.count("GET", f"/v2/{repo}/manifests/sha256-", since=mark)), (1, 1),
            f"upstream asks for one referrers list wanted by 30 clients at once "
            f"({len(asked)} requests; the first: {asked[:4]})")

    def test_gc_removes_hosted_blobs_no_manifest_references(self):
        work = os.path.join(self.work, "gc")
        p = self.start_pantry(work)
        try:
            auth = [("Authorization", basic(USER, TOKEN))]
            kept = oci_registry.source_ref(self.images["busybox"]["layout"])
            subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                            f"{USER}:{TOKEN}", kept, f"docker://127.0.0.1:{p.port}/local/kept:1"],
                           check=True, capture_output=True, timeout=120)
            junk = os.urandom(50_000)
            r = self.api("POST", f"/v2/local/junk/blobs/uploads/?digest={sha256(junk)}", auth,
                         junk, pantry=p)
            self.assertEqual(r.status, 201, r)
            # A proxied layer mounted into a hosted repository (pinned there) that no manifest
            # of it uses: gc drops the reference and unpins the layer, which stays as cache.
            # (org/multi's arm64 config: no hosted image here has it.)
            arm = self.images["multi"]["manifests"]["linux/arm64"]
            layer = arm["config"]["digest"]
            self.assertEqual(self.api("GET", f"/v2/org/multi/manifests/{arm['digest']}",
                                      [("Accept", moi.OCI_MANIFEST)], pantry=p).status, 200)
            self.assertEqual(self.api("GET", f"/v2/org/multi/blobs/{layer}", pantry=p).status, 200)
            r = self.api("POST", f"/v2/local/mounted/blobs/uploads/?mount={layer}&from=org/multi",
                         auth, pantry=p)
            self.assertEqual(r.status, 201, r)
            before, _ = p.blobs()
        finally:
            p.stop()
        out = subprocess.run([PANTRY, "cache", "gc", "--data-dir", p.data_dir, "--grace", "0s"],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("hosted: removed 2 blob references", out.stdout)
        self.assertIn("removed 1 blobs", out.stdout)
        self.assertIn("unpinned 1", out.stdout)
        after, stats = p.blobs()
        self.assertEqual(after, before - 1, stats)
        p = pantry_serve.Pantry(PANTRY, work, "http://127.0.0.1:9/simple/", oci=f"""\
  default_upstream: docker.io
  upstreams: [{{name: docker.io, url: "{self.reg.url}"}}]
  hosted: {{prefix: local/, users: [{{name: {USER}, token: "{TOKEN}"}}]}}
""")
        try:
            dest = os.path.join(self.work, "gc-kept")
            subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                            f"docker://127.0.0.1:{p.port}/local/kept:1", f"oci:{dest}:x"],
                           check=True, capture_output=True, timeout=120)
            gone = self.api("GET", f"/v2/local/junk/blobs/{sha256(junk)}", pantry=p)
            self.assertEqual(gone.status, 404, gone)
            gone = self.api("GET", f"/v2/local/mounted/blobs/{layer}", pantry=p)
            self.assertEqual(gone.status, 404, gone)
            cached = self.api("GET", f"/v2/org/multi/blobs/{layer}", pantry=p)
            self.assertEqual((cached.status, sha256(cached.body)), (200, layer), cached)
        finally:
            p.stop()

    # ---- last: the upstream goes away ----

    def test_zz_everything_pulls_again_with_the_upstream_stopped(self):
        names = ["busybox:1.36", "org/multi:latest", "org/schema2:latest", "org/list:latest"]
        for name in names:
            self.skopeo("copy", "--all", "--src-tls-verify=false", self.ref(name),
                        f"dir:{os.path.join(self.work, 'warm-' + name.replace('/', '_'))}")
        self.reg.stop()
        time.sleep(TAG_TTL + 0.5)  # past tag_ttl: pantry tries upstream and serves stale copies
        for name in names:
            with self.subTest(name):
                dest = os.path.join(self.work, "offline-" + name.replace("/", "_"))
                self.skopeo("copy", "--all", "--src-tls-verify=false", self.ref(name),
                            f"dir:{dest}")
                with open(os.path.join(dest, "manifest.json"), "rb") as f:
                    upstream_name = name if "/" in name else "library/" + name
                    self.assertEqual(sha256(f.read()), self.pushed[upstream_name])
        r = self.get_manifest("/v2/busybox/manifests/1.36")
        # Revalidation was tried and failed: 111, as PyPI says it.
        self.assertEqual(r.headers.get("Warning"), '111 pantry "Revalidation Failed"', r)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: oci_proxy_test.py PANTRY_BINARY")
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
