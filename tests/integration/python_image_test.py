#!/usr/bin/python3
"""Self-check of tests/fixtures/python_image.py: the Python image (built with mmdebstrap once per
machine, 25-60 s; a few seconds when cached) is a well-formed OCI image whose root file system
has python3, pip, pytest, flake8 and build and none of the host's /etc/resolv.conf and
/etc/hostname; a second ensure is a cache hit; parallel callers build once; a failed build
leaves nothing behind and says why; push() gives the built digest.

Run by ctest (no pantry involved), or directly:
    /usr/bin/python3 tests/integration/python_image_test.py
KEEP=1 keeps the temp dir (the unpacked image).
"""

import gzip
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_oci_images as moi  # noqa: E402
import oci_registry  # noqa: E402
import python_image  # noqa: E402

UMOCI = moi.UMOCI
SKOPEO = moi.SKOPEO


def fake_build(dest, mirror, epoch, key):
    """A build in a fraction of a second, for the cache's own logic: busybox in one layer.  Counts
    its calls in BUILDS_FILE (an environment variable, so forked processes share it)."""
    with open(os.environ["BUILDS_FILE"], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.5)  # long enough for the other callers to queue on the lock
    if os.environ.get("FAIL_BUILD"):
        raise RuntimeError("fake build failed")
    layout = moi.Layout(os.path.join(dest, "layout"))
    rootfs = moi.RootFS(epoch)
    moi.busybox_rootfs(rootfs, "python-fake")
    manifest = layout.add_image([layout.add_layer(rootfs)], python_image.PLATFORM, epoch)
    layout.tag(manifest, python_image.TAG)
    meta = {"key": key, "mirror": mirror, "epoch": epoch, "build_seconds": 0.5}
    with open(os.path.join(dest, python_image.METADATA), "w") as f:
        json.dump(meta, f)
    return meta


def ensure_with_fake_build(cache_root, queue):
    with mock.patch.object(python_image, "_build", fake_build):
        try:
            queue.put(python_image.ensure_python_image(cache_root))
        except Exception as e:  # reported to the parent, which fails the test
            queue.put(repr(e))


class PythonImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="pantry-python-image-test-")
        started = time.monotonic()
        cls.image = python_image.ensure_python_image()
        cls.first_seconds = time.monotonic() - started
        how = (f"built it in {cls.first_seconds:.1f} s (mmdebstrap {cls.image['mmdebstrap_seconds']}"
               " s)" if cls.image["built"] else
               f"found it cached in {cls.first_seconds * 1000:.1f} ms (built in "
               f"{cls.image['build_seconds']} s)")
        layer = cls.image["layers"][0]["size"]
        print(f"\npython image {cls.image['digest']} at {cls.image['layout']}: {how}; "
              f"layer {layer / 1e6:.1f} MB gzip, rootfs {cls.image['rootfs_bytes'] / 1e6:.1f} MB",
              file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("KEEP"):
            print(f"\nkept {cls.work}", file=sys.stderr)
        else:
            shutil.rmtree(cls.work, ignore_errors=True)

    def unpacked(self):
        """The image unpacked with umoci (once per run): the rootfs directory."""
        bundle = os.path.join(self.work, "bundle")
        if not os.path.isdir(bundle):
            subprocess.run([UMOCI, "unpack", "--image", f"{self.image['layout']}:{self.image['tag']}",
                            bundle], check=True, capture_output=True)
        return os.path.join(bundle, "rootfs")

    def test_layout_is_an_oci_image_of_the_promised_shape(self):
        image = self.image
        inspected = json.loads(subprocess.run(
            [SKOPEO, "inspect", f"oci:{image['layout']}:{image['tag']}"], check=True,
            capture_output=True, text=True).stdout)
        self.assertEqual(inspected["Digest"], image["manifest_digest"], inspected)
        self.assertEqual((inspected["Os"], inspected["Architecture"]), ("linux", "amd64"), inspected)
        self.assertEqual(inspected["Layers"], [image["layers"][0]["digest"]], inspected)
        config = moi.read_blob_json(image["layout"], image["config_digest"])
        self.assertEqual(config["config"]["Cmd"], ["python3"], config)
        self.assertIn("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                      config["config"]["Env"], config)
        self.assertEqual(image["layers"][0]["media_type"], moi.OCI_LAYER_GZIP, image)
        # The diff ID is the sha256 of the uncompressed layer.
        blob = os.path.join(image["layout"], "blobs", *image["layers"][0]["digest"].split(":", 1))
        diff = hashlib.sha256()
        with gzip.open(blob, "rb") as f:
            while chunk := f.read(1 << 20):
                diff.update(chunk)
        self.assertEqual(config["rootfs"]["diff_ids"], ["sha256:" + diff.hexdigest()], config)

    def test_rootfs_has_python_and_its_tools_and_none_of_the_hosts_files(self):
        rootfs = self.unpacked()
        for tool in ("python3", "pip3", "pytest-3", "flake8"):
            path = os.path.join(rootfs, "usr", "bin", tool)
            self.assertTrue(os.path.lexists(path), f"{path} is missing")
        for module in ("pip", "venv", "build", "pytest", "flake8", "setuptools", "wheel"):
            found = [p for p in (os.path.join(rootfs, "usr/lib/python3/dist-packages", module),
                                 os.path.join(rootfs, "usr/lib/python3.11", module))
                     if os.path.isdir(p)]
            self.assertTrue(found, f"module {module} is in neither dist-packages nor the stdlib")
        for host_file in ("etc/resolv.conf", "etc/hostname"):
            self.assertFalse(os.path.lexists(os.path.join(rootfs, host_file)),
                             f"{host_file} is in the image")
        self.assertEqual(os.listdir(os.path.join(rootfs, "dev")), [], "a runtime mounts /dev")
        if os.geteuid() != 0:
            self.skipTest("running python3 in the rootfs needs root (chroot)")
        r = subprocess.run(["/usr/sbin/chroot", rootfs, "/usr/bin/python3", "-c",
                            "import sys, pip, venv, build, pytest, flake8; "
                            "print(sys.version.split()[0], pip.__version__)"],
                           env={"PATH": "/usr/sbin:/usr/bin:/bin"}, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        print(f"\nin the image: python {r.stdout.strip()}", file=sys.stderr)

    def test_second_ensure_is_a_cache_hit(self):
        started = time.monotonic()
        again = python_image.ensure_python_image()
        seconds = time.monotonic() - started
        print(f"\nsecond ensure: {seconds * 1000:.1f} ms", file=sys.stderr)
        self.assertFalse(again["built"], again)
        self.assertEqual(again["digest"], self.image["digest"])
        self.assertEqual(again["layout"], self.image["layout"])

    def test_push_gives_the_built_digest(self):
        with oci_registry.Registry("open") as reg:
            digest = python_image.push(self.image["layout"], self.image["tag"], reg.host,
                                       "library/python")
            self.assertEqual(digest, self.image["manifest_digest"])
            self.assertEqual(reg.count("PUT", "/v2/library/python/manifests/latest", status=201),
                             1, reg.entries())

    # ---- the cache, with a fake build ----

    def test_parallel_callers_build_once(self):
        cache_root = os.path.join(self.work, "cache-parallel")
        builds = os.path.join(self.work, "builds-parallel")
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        with mock.patch.dict(os.environ, {"BUILDS_FILE": builds}):
            procs = [ctx.Process(target=ensure_with_fake_build, args=(cache_root, queue))
                     for _ in range(4)]
            for p in procs:
                p.start()
            results = [queue.get(timeout=60) for _ in procs]
            for p in procs:
                p.join(timeout=60)
        for r in results:
            self.assertIsInstance(r, dict, r)
        with open(builds) as f:
            self.assertEqual(len(f.read().split()), 1, "one build for four callers")
        self.assertEqual(len({r["digest"] for r in results}), 1, results)
        self.assertEqual(sorted(r["built"] for r in results), [False, False, False, True], results)
        entries = sorted(os.listdir(cache_root))
        key = results[0]["key"]
        self.assertEqual(entries, [key, key + ".lock"], "no temporary directory is left")

    def test_failed_build_leaves_nothing_and_the_next_one_builds(self):
        cache_root = os.path.join(self.work, "cache-failing")
        builds = os.path.join(self.work, "builds-failing")
        os.makedirs(cache_root)
        with mock.patch.dict(os.environ, {"BUILDS_FILE": builds, "FAIL_BUILD": "1"}), \
                mock.patch.object(python_image, "_build", fake_build):
            key = python_image.cache_key(python_image.debian_mirror(), python_image.epoch_default())
            # What a build killed mid-way leaves: removed by the next build.
            os.makedirs(os.path.join(cache_root, f".building-{key}-999999", "rootfs"))
            with self.assertRaisesRegex(RuntimeError, "fake build failed"):
                python_image.ensure_python_image(cache_root)
            self.assertEqual(sorted(os.listdir(cache_root)), [key + ".lock"])
            del os.environ["FAIL_BUILD"]
            image = python_image.ensure_python_image(cache_root)
        self.assertTrue(image["built"], image)
        # An entry with a blob missing is built again.
        os.remove(os.path.join(image["layout"], "blobs", *image["layers"][0]["digest"].split(":", 1)))
        with mock.patch.dict(os.environ, {"BUILDS_FILE": builds}), \
                mock.patch.object(python_image, "_build", fake_build):
            again = python_image.ensure_python_image(cache_root)
        self.assertTrue(again["built"], again)
        self.assertEqual(again["digest"], image["digest"])

    def test_mmdebstrap_failure_names_the_command_and_its_stderr(self):
        cache_root = os.path.join(self.work, "cache-no-mirror")
        if os.geteuid() != 0:
            self.skipTest("mmdebstrap --mode=root needs root")
        with mock.patch.dict(os.environ, {"PANTRY_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"}):
            with self.assertRaises(RuntimeError) as raised:
                python_image.ensure_python_image(cache_root)
        message = str(raised.exception)
        self.assertIn("mmdebstrap failed", message)
        self.assertIn("127.0.0.1", message.split("\n", 1)[1], "stderr is in the message")
        self.assertEqual([e for e in os.listdir(cache_root) if not e.endswith(".lock")], [],
                         "nothing but the lock file is left")


if __name__ == "__main__":
    unittest.main(verbosity=2)
