#!/usr/bin/python3
"""pantry's OCI pull-through cache against docker-registry's (CNCF distribution 2.8, proxy mode),
in front of the same upstream, with nginx serving the same files statically as the ceiling.

    bench/oci/run.py PANTRY_BINARY [--duration 3] [--rounds 5] [--conns 1,16,64]
                     [--herd-clients 50] [--slow-rate 20m] [--no-cold] [--quick]
                     [--workdir DIR] [--keep]

Everything runs on 127.0.0.1:

  upstream  tests/fixtures/oci_registry.py: docker-registry in open mode holding one image,
            bench/image:latest (OCI manifest; config, a ~1 MiB and a ~100 MiB gzip layer of
            random bytes), pushed with skopeo;
  pantry    `PANTRY_BINARY serve` (tests/fixtures/pantry_serve.py: 2 server threads), oci
            upstream "up" = the upstream, default_upstream up, tag_ttl 10m;
  registry  a second docker-registry, in proxy mode (`proxy: remoteurl`) on the same upstream;
  nginx     static files at the same /v2/... paths (the manifest and the blobs), sendfile.

Warm rows: after each server has answered the manifest and each blob twice (bodies checked
against their digests; the registry until a GET no longer reaches the upstream), `wrk` fetches
one URL over and over -- the manifest by tag (with an Accept header of the four manifest types),
the 1 MiB blob, the 100 MiB blob -- at each connection count (wrk threads = min(conns, 2)), for
--duration seconds, rotating the order of the three servers every round, --rounds times; the
table gives medians and the ratios pantry / registry and pantry / nginx.  Then RssAnon and
VmHWM of pantry and of the registry (nginx: master + workers).

Cold rows: fresh pantry and fresh registry (empty caches), one after the other, first on the
upstream directly, then through a slow upstream (an nginx reverse proxy in front of it with
`limit_rate` per connection, buffered: nginx applies no limit_rate to an unbuffered proxied
response): --herd-clients clients, released together, each pull
the image (manifest by tag, then config, 1 MiB and 100 MiB blob, one keep-alive connection);
the wall time until the last one has all its bytes, and the upstream registry's GETs of each
blob (its access log).  pantry must make exactly one GET per blob.

Exit status: 0; 1 if a request failed (wrk non-2xx/3xx or socket errors, a wrong body, a herd
client error) or pantry's cold pull made other than one upstream GET of a blob; 2 if a server
did not start or another error stopped the run.  The ratio targets are printed, not enforced.
Needs the Debian packages docker-registry, skopeo, nginx and wrk; stdlib only.
"""

import argparse
import gzip
import hashlib
import http.client
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures"))
sys.path.insert(0, FIXTURES)
import make_oci_images as moi  # noqa: E402
import nginx_pypi  # noqa: E402
import oci_registry  # noqa: E402
import pantry_serve  # noqa: E402

# wrk, its Lua summary, /proc readers and the number format are bench/pypi's.
_spec = importlib.util.spec_from_file_location("pypi_bench", os.path.join(HERE, "..", "pypi", "run.py"))
pypi_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pypi_bench)
Failure, log, loadavg, fmt = pypi_bench.Failure, pypi_bench.log, pypi_bench.loadavg, pypi_bench.fmt
proc_status, WRK, WRK_LUA = pypi_bench.proc_status, pypi_bench.WRK, pypi_bench.WRK_LUA

MIB = 1 << 20
REPO = "bench/image"
TAG = "latest"
SMALL_BYTES = 1 * MIB
BIG_BYTES = 100 * MIB
ACCEPT = ", ".join([moi.OCI_INDEX, moi.OCI_MANIFEST, moi.DOCKER_MANIFEST_LIST, moi.DOCKER_MANIFEST])
TAG_TTL = "10m"
PANTRY_UPSTREAM_TIMEOUTS = "connect_timeout: 5s, header_timeout: 10s, idle_timeout: 10s"
SERVERS = ("pantry", "registry", "nginx")


# ---------------------------------------------------------------- the image

def random_layer(layout, payload_bytes, seed, epoch):
    """A gzip (level 1) layer holding one file of PAYLOAD_BYTES seeded-random bytes, streamed to
    disk (skopeo keeps a gzip layer as it is; it would compress anything else).  Returns
    (descriptor, diff_id)."""
    tmp = os.path.join(layout.path, f"layer-{seed}.tmp")
    rng = random.Random(seed)
    with open(tmp, "wb") as raw:
        gz_out = moi._HashingWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=gz_out, compresslevel=1, mtime=0) as gz:
            tar_out = moi._HashingWriter(gz)
            with tarfile.open(fileobj=tar_out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo(f"random-{seed}.bin")
                info.size, info.mode, info.mtime = payload_bytes, 0o644, epoch
                info.uname = info.gname = "root"

                class Payload:
                    left = payload_bytes

                    def read(self, n):
                        n = min(n, self.left, MIB)
                        self.left -= n
                        return rng.randbytes(n)
                tar.addfile(info, Payload())
    digest = "sha256:" + gz_out.hash.hexdigest()
    os.replace(tmp, layout.blob_path(digest))
    return ({"mediaType": moi.OCI_LAYER_GZIP, "digest": digest, "size": gz_out.size},
            "sha256:" + tar_out.hash.hexdigest())


def build_image(workdir):
    """The bench image as an OCI layout; returns its description (moi.describe_oci) plus
    "manifest_bytes" and "files" {name: (digest, size)} of config, small and big."""
    epoch = moi.DEFAULT_EPOCH
    layout = moi.Layout(os.path.join(workdir, "bench-image"))
    # The tar header and padding are 1.5 KiB; the payload is sized for a blob of about the
    # round size (gzip -1 of random bytes adds ~0.03 %).
    small = random_layer(layout, SMALL_BYTES - 2048, 1, epoch)
    big = random_layer(layout, BIG_BYTES - 2048 - BIG_BYTES * 3 // 10000, 2, epoch)
    layout.tag(layout.add_image([small, big], "linux/amd64", epoch, cmd=("/random-1.bin",)), TAG)
    image = moi.describe_oci(layout.path)
    with open(layout.blob_path(image["digest"]), "rb") as f:
        image["manifest_bytes"] = f.read()
    image["files"] = {"config": (image["config"]["digest"], image["config"]["size"]),
                      "small": (image["layers"][0]["digest"], image["layers"][0]["size"]),
                      "big": (image["layers"][1]["digest"], image["layers"][1]["size"])}
    return image


def static_tree(root, image):
    """The nginx ceiling's files, at the registry API paths: /v2/REPO/manifests/TAG and
    /v2/REPO/blobs/sha256:HEX (hard links to the layout's blobs)."""
    base = os.path.join(root, "v2", REPO)
    os.makedirs(os.path.join(base, "manifests"), exist_ok=True)
    os.makedirs(os.path.join(base, "blobs"), exist_ok=True)
    os.link(os.path.join(image["layout"], "blobs", "sha256", image["digest"].split(":", 1)[1]),
            os.path.join(base, "manifests", TAG))
    for digest, _ in image["files"].values():
        os.link(os.path.join(image["layout"], "blobs", "sha256", digest.split(":", 1)[1]),
                os.path.join(base, "blobs", digest))


# ---------------------------------------------------------------- nginx: static ceiling, throttle

def nginx_head(workdir, workers):
    return nginx_pypi.conf_head(workdir, "bench/oci/run.py", workers, connections=4096)


def static_conf(workdir, port, root):
    """The ceiling: the manifest and blobs as static files, sendfile, 2 workers."""
    return nginx_head(workdir, 2) + f"""
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {root};
        location /v2/ {{
            types {{ }}
            default_type application/octet-stream;
        }}
        location /v2/{REPO}/manifests/ {{
            types {{ }}
            default_type {moi.OCI_MANIFEST};
        }}
    }}
}}
"""


def throttle_conf(workdir, port, upstream_port, rate):
    """The slow upstream: a reverse proxy that sends each response at RATE. Buffered: with
    `proxy_buffering off` nginx ignores limit_rate (a 100 MiB response then took 0.3 s at
    `limit_rate 20m`, 4.9 s buffered)."""
    return nginx_head(workdir, 1) + f"""
    upstream registry {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering on;
            proxy_read_timeout 300s;
            limit_rate {rate};
        }}
    }}
}}
"""


Nginx = pypi_bench.Nginx


# ---------------------------------------------------------------- servers under test

def start_pantry(binary, workdir, upstream_url):
    return pantry_serve.Pantry(binary, workdir, "http://127.0.0.1:9/simple/",
                               upstream_timeouts=PANTRY_UPSTREAM_TIMEOUTS, oci=f"""\
  default_upstream: up
  upstreams:
    - {{ name: up, url: "{upstream_url}" }}
  tag_ttl: {TAG_TTL}
""")


def start_registry(workdir, upstream_url):
    return oci_registry.Registry("proxy", workdir, upstream=upstream_url)


def server_url(who, srv, path):
    return (srv.url + path) if who == "registry" else srv.url(path)


def server_running(who, srv):
    return srv.running() if who != "pantry" else srv.process.poll() is None


def server_tail(who, srv):
    if who == "pantry":
        return srv.tail()
    if who == "registry":
        return srv.log_tail()
    return nginx_pypi.tail(srv.error_log)


def stop_server(who, srv):
    if who == "registry":
        srv.close()
    else:
        srv.stop()


def memory(who, srv):
    """(RssAnon kB, VmHWM kB, process count); nginx summed over the master and its workers."""
    return pypi_bench.memory(srv)


# ---------------------------------------------------------------- the upstream's access log

class AccessLog:
    """docker-registry's access log (oci_registry.ACCESS_LINE), read incrementally: the registry
    writes each line after its response, so reads wait until the file stops growing."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def _size(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def settle(self, quiet=0.1, limit=60.0):
        deadline = time.monotonic() + limit
        size, since = self._size(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            time.sleep(min(0.05, quiet))
            now = self._size()
            if now != size:
                size, since = now, time.monotonic()

    def new(self, quiet=0.1):
        """The entries logged since the last call: dicts with method, path, status."""
        self.settle(quiet)
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        out = []
        for line in data[:end].decode(errors="replace").splitlines():
            m = oci_registry.ACCESS_LINE.match(line)
            if m:
                out.append({"method": m["method"], "path": m["uri"].split("?", 1)[0],
                            "status": int(m["status"])})
        return out


def count(entries, method, path_part):
    return sum(1 for e in entries if e["method"] == method and path_part in e["path"])


# ---------------------------------------------------------------- clients

def request(base, path, headers=None, timeout=120, digest=None):
    """(status, headers, bytes read, sha256 hex or None); the body is read in 1 MiB pieces."""
    host, port = base.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        h = hashlib.sha256() if digest else None
        n = 0
        while True:
            chunk = r.read(MIB)
            if not chunk:
                break
            n += len(chunk)
            if h:
                h.update(chunk)
        return r.status, r.headers, n, (h.hexdigest() if h else None)
    finally:
        conn.close()


def check(who, base, path, size, digest, headers=None):
    status, _, n, got = request(base, path, headers, digest=True)
    if status != 200 or n != size or "sha256:" + got != digest:
        raise Failure(f"{who}: GET {base}{path}: {status}, {n} bytes, sha256:{got[:12]}... "
                      f"(want 200, {size} bytes, {digest[:19]}...)")


def paths(image):
    return {"manifest": f"/v2/{REPO}/manifests/{TAG}",
            "small": f"/v2/{REPO}/blobs/{image['files']['small'][0]}",
            "big": f"/v2/{REPO}/blobs/{image['files']['big'][0]}",
            "config": f"/v2/{REPO}/blobs/{image['files']['config'][0]}"}


def warm(who, srv, image, upstream_log):
    """Each URL through the server twice, bodies checked; then, for the registry (which stores
    a blob in the background after answering it from upstream), until a GET of each no longer
    reaches the upstream."""
    base = server_url(who, srv, "")
    p = paths(image)
    want = {"manifest": (image["digest"], image["size"]), **image["files"]}
    for _ in range(2):
        for kind in ("manifest", "config", "small", "big"):
            check(who, base, p[kind], want[kind][1], want[kind][0],
                  {"Accept": ACCEPT} if kind == "manifest" else None)
    if who != "registry":
        return
    deadline = time.monotonic() + 60
    while True:
        upstream_log.new(quiet=0.5)
        for kind in ("config", "small", "big"):
            check(who, base, p[kind], want[kind][1], want[kind][0])
        gets = count(upstream_log.new(quiet=0.5), "GET", "/blobs/")
        if gets == 0:
            return
        if time.monotonic() > deadline:
            raise Failure(f"registry: blob GETs still reach the upstream after 60 s ({gets} in the last check)")
        time.sleep(1)


def wrk(url, conns, duration, headers, lua_path):
    return pypi_bench.wrk(url, conns, duration, headers, lua_path)


def pull_herd(base, clients, image, timeout=600):
    """CLIENTS threads, released together, each pull the image over one keep-alive connection:
    the manifest by tag, then config, 1 MiB and 100 MiB blob.  Returns (wall s, [failures])."""
    host, port = base.split("//", 1)[1].split(":")
    p = paths(image)
    steps = [("manifest", p["manifest"], image["size"], image["digest"], {"Accept": ACCEPT})]
    steps += [(kind, p[kind], image["files"][kind][1], image["files"][kind][0], {})
              for kind in ("config", "small", "big")]
    def fetch(i):
        buf = memoryview(bytearray(MIB))
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        for kind, path, size, digest, headers in steps:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            # the first client checks every body; the others the manifest and the lengths
            h = hashlib.sha256() if i == 0 or kind == "manifest" else None
            n = 0
            while True:
                k = r.readinto(buf)
                if not k:
                    break
                if h:
                    h.update(buf[:k])
                n += k
            if r.status != 200 or n != size or (h and "sha256:" + h.hexdigest() != digest):
                raise Failure(f"{kind}: {r.status}, {n} bytes (want 200, {size})")
        conn.close()
        return True, ""

    return pypi_bench.release_together(clients, fetch, timeout)


# ---------------------------------------------------------------- the run

def run(args, work, failures):
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = loadavg()
    versions = {
        "pantry": subprocess.run([args.pantry, "version"], capture_output=True, text=True).stdout.strip(),
        "registry": subprocess.run([oci_registry.REGISTRY, "--version"], capture_output=True,
                                   text=True).stdout.strip(),
        "nginx": subprocess.run([nginx_pypi.NGINX, "-v"], capture_output=True, text=True).stderr.strip(),
        "wrk": subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip(),
    }
    log(f"bench/oci: {started}, {os.cpu_count()} cores, load average {load_start}; work dir {work}")
    lua = os.path.join(work, "summary.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)

    t0 = time.monotonic()
    image = build_image(os.path.join(work, "images"))
    static_root = os.path.join(work, "static")
    static_tree(static_root, image)
    sizes = {k: v[1] for k, v in image["files"].items()}
    log(f"image {REPO}:{TAG} {image['digest'][:19]}...: manifest {image['size']} B, config "
        f"{sizes['config']} B, layers {sizes['small']} B and {sizes['big']} B "
        f"({time.monotonic() - t0:.1f} s)")

    servers = []  # (who, server), stopped in reverse at the end
    try:
        upstream = oci_registry.Registry("open", os.path.join(work, "upstream"))
        servers.append(("upstream", upstream))
        upstream.push(image["layout"], TAG, f"{REPO}:{TAG}")
        up_log = AccessLog(upstream.access_log)
        up_log.new()

        srv = {"pantry": start_pantry(args.pantry, os.path.join(work, "pantry"), upstream.url),
               "registry": start_registry(os.path.join(work, "registry"), upstream.url),
               "nginx": Nginx(os.path.join(work, "nginx-static"),
                              lambda w, port: static_conf(w, port, static_root))}
        servers += list(srv.items())
        for who in SERVERS:
            warm(who, srv[who], image, up_log)
            up_log.new()
        log(f"warm: every server answered the manifest and blobs twice ({time.monotonic() - t0:.1f} s)")

        p = paths(image)
        rows = []
        for kind, label, headers in (("manifest", "manifest by tag", [f"Accept: {ACCEPT}"]),
                                     ("small", "1 MiB blob", []),
                                     ("big", "100 MiB blob", [])):
            for conns in args.conns:
                rows.append({"kind": kind, "label": label, "headers": headers, "conns": conns,
                             "runs": {w: [] for w in SERVERS}, "upstream": {w: 0 for w in SERVERS},
                             "ping": 0, "tag_head": 0})
        peak_anon = {w: 0 for w in SERVERS}
        for rnd in range(args.rounds):
            order = SERVERS[rnd % 3:] + SERVERS[:rnd % 3]
            for row in rows:
                for who in order:
                    s = wrk(server_url(who, srv[who], p[row["kind"]]), row["conns"], args.duration,
                            row["headers"], lua)
                    row["runs"][who].append(s)
                    entries = up_log.new()
                    row["upstream"][who] += len(entries)
                    if who == "registry":
                        row["ping"] += sum(1 for e in entries if e["method"] == "GET" and e["path"] == "/v2/")
                        row["tag_head"] += count(entries, "HEAD", f"/manifests/{TAG}")
                    peak_anon[who] = max(peak_anon[who], memory(who, srv[who])[0])
                    pypi_bench.note_wrk(s, f"round {rnd + 1}/{args.rounds}", row, who, failures,
                                        (15, 8))
                    if not server_running(who, srv[who]):
                        raise RuntimeError(f"{who} exited:\n{server_tail(who, srv[who])}")

        mem = {who: memory(who, srv[who]) for who in SERVERS}
        status = {who: proc_status(srv[who].process.pid) for who in ("pantry", "registry")}
        for who in SERVERS:
            stop_server(who, srv[who])
            servers.remove((who, srv[who]))

        cold = []
        if not args.no_cold:
            throttle = Nginx(os.path.join(work, "nginx-throttle"),
                             lambda w, port: throttle_conf(w, port, upstream.port, args.slow_rate))
            servers.append(("throttle", throttle))
            slow = f"slow (limit_rate {args.slow_rate})"
            for label, up_url in (("fast", upstream.url), (slow, throttle.url_base)):
                entry = {"label": label}
                for who in ("pantry", "registry"):
                    wd = os.path.join(work, f"cold-{who}-{label.split()[0]}")
                    s = start_pantry(args.pantry, wd, up_url) if who == "pantry" else start_registry(wd, up_url)
                    servers.append((who, s))
                    up_log.new(quiet=0.5)
                    log(f"cold, {label} upstream: {args.herd_clients} clients pull the uncached image "
                        f"from {who}")
                    wall, bad = pull_herd(server_url(who, s, ""), args.herd_clients, image)
                    # the registry may still be storing a blob it fetched in the background
                    entries = up_log.new(quiet=2.0)
                    gets = {kind: count(entries, "GET", "/blobs/" + image["files"][kind][0])
                            for kind in ("config", "small", "big")}
                    manifest = {m: count(entries, m, "/manifests/") for m in ("GET", "HEAD")}
                    anon, hwm, _ = memory(who, s)
                    total = args.herd_clients * (image["size"] + sum(sizes.values()))
                    entry[who] = {"wall": wall, "gets": gets, "manifest": manifest, "all": len(entries), "bad": bad,
                                  "anon": anon, "hwm": hwm, "mib_s": total / MIB / wall if wall == wall else None}
                    log(f"cold {label} {who}: {wall:.2f} s, upstream GETs config {gets['config']} "
                        f"1MiB {gets['small']} 100MiB {gets['big']}, manifest GET {manifest['GET']} "
                        f"HEAD {manifest['HEAD']}, {len(bad)} failed clients, RssAnon {anon / 1024:.1f} MiB, "
                        f"load {loadavg()}")
                    if bad:
                        failures.append(f"cold {label} {who}: {len(bad)} of {args.herd_clients} clients "
                                        f"failed: {bad[:5]}")
                    if who == "pantry" and any(g != 1 for g in gets.values()):
                        failures.append(f"cold {label} pantry: upstream GETs per blob {gets}, want 1 each")
                    stop_server(who, s)
                    servers.remove((who, s))
                cold.append(entry)
    finally:
        for who, s in reversed(servers):
            try:
                stop_server(who, s)
            except Exception:  # noqa: BLE001 -- stop the others anyway
                traceback.print_exc()

    # ------------------------------------------------------------ report
    load_end = loadavg()
    out = []
    out.append(f"# bench/oci/run.py, {started}: {os.cpu_count()} cores, "
               f"load average {load_start} at start, {load_end} at end")
    out.append(f"# {versions['pantry']}; docker-registry {versions['registry']}; {versions['nginx']}; "
               f"{versions['wrk']}")
    out.append(f"# warm: {args.rounds} rounds of {args.duration} s per row and server, medians; "
               f"manifest {image['size']} B, blobs {sizes['small']} B and {sizes['big']} B; "
               f"ratios of req/s (manifest) or MiB/s (blobs), above 1: pantry faster")
    out.append("")
    out.append("| row | conns | pantry req/s | registry req/s | nginx req/s | pantry MiB/s | registry MiB/s "
               "| nginx MiB/s | pantry/registry | pantry/nginx | pantry p99 ms | registry p99 ms | nginx p99 ms |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    targets = []
    for row in rows:
        med = {w: statistics.median(s["req_s"] for s in row["runs"][w]) for w in SERVERS}
        mib = {w: statistics.median(s["mib_s"] for s in row["runs"][w]) for w in SERVERS}
        p99 = {w: statistics.median(s["p99_us"] for s in row["runs"][w]) / 1000 for w in SERVERS}
        by = mib if row["kind"] != "manifest" else med
        vs_reg, vs_nginx = by["pantry"] / by["registry"], by["pantry"] / by["nginx"]
        out.append(f"| {row['label']} | {row['conns']} | {fmt(med['pantry'])} | {fmt(med['registry'])} | "
                   f"{fmt(med['nginx'])} | {fmt(mib['pantry'])} | {fmt(mib['registry'])} | {fmt(mib['nginx'])} | "
                   f"{vs_reg:.2f} | {vs_nginx:.2f} | {p99['pantry']:.2f} | {p99['registry']:.2f} | "
                   f"{p99['nginx']:.2f} |")
        if row["kind"] == "manifest":
            targets.append((f"manifest by tag c={row['conns']}: pantry/registry {vs_reg:.1f} >= 50",
                            vs_reg >= 50))
        else:
            targets.append((f"{row['label']} c={row['conns']}: pantry/nginx {vs_nginx:.2f} >= 0.9",
                            vs_nginx >= 0.9))
    up = {w: sum(r["upstream"][w] for r in rows) for w in SERVERS}
    up_manifest = {w: sum(r["upstream"][w] for r in rows if r["kind"] == "manifest") for w in SERVERS}
    out.append("")
    tag_gets = sum(s["requests"] for r in rows if r["kind"] == "manifest" for s in r["runs"]["registry"])
    out.append(f"upstream requests during the warm runs: pantry {up['pantry']}, registry {up['registry']} "
               f"({up_manifest['registry']} in the manifest rows: "
               f"{sum(r['ping'] for r in rows if r['kind'] == 'manifest')} GET /v2/ and "
               f"{sum(r['tag_head'] for r in rows if r['kind'] == 'manifest')} HEAD of the tag, for "
               f"{tag_gets} tag GETs answered), nginx {up['nginx']}")
    targets.append((f"manifests by tag from pantry's cache: {up_manifest['pantry']} upstream requests "
                    "in the manifest rows", up_manifest["pantry"] == 0))
    out.append(f"memory after the warm runs: pantry RssAnon {mem['pantry'][0] / 1024:.1f} MiB "
               f"(VmRSS {status['pantry'].get('VmRSS', 0) / 1024:.1f} MiB, of it RssFile "
               f"{status['pantry'].get('RssFile', 0) / 1024:.1f} MiB: the mapped cache), VmHWM "
               f"{status['pantry'].get('VmHWM', 0) / 1024:.1f} MiB; registry RssAnon "
               f"{mem['registry'][0] / 1024:.1f} MiB (VmRSS {status['registry'].get('VmRSS', 0) / 1024:.1f}, "
               f"VmHWM {status['registry'].get('VmHWM', 0) / 1024:.1f} MiB); nginx RssAnon "
               f"{mem['nginx'][0] / 1024:.1f} MiB over {mem['nginx'][2]} processes")
    out.append(f"highest RssAnon seen after any wrk run: pantry {peak_anon['pantry'] / 1024:.1f} MiB, "
               f"registry {peak_anon['registry'] / 1024:.1f} MiB, nginx {peak_anon['nginx'] / 1024:.1f} MiB")
    anon_max = max(peak_anon["pantry"], mem["pantry"][0])
    targets.append((f"pantry RssAnon {anon_max / 1024:.1f} MiB < 64 MiB (highest seen)", anon_max < 64 * 1024))
    if cold:
        out.append("")
        out.append(f"| cold: {args.herd_clients} clients pull the uncached image | upstream | pantry | registry "
                   "| registry/pantry |")
        out.append("|---|---|---:|---:|---:|")
        for entry in cold:
            pn, rg = entry["pantry"], entry["registry"]
            out.append(f"| wall time until the last client has all bytes (s) | {entry['label']} | "
                       f"{pn['wall']:.2f} | {rg['wall']:.2f} | {rg['wall'] / pn['wall']:.2f} |")
            out.append(f"| aggregate MiB/s to the clients | {entry['label']} | {fmt(pn['mib_s'])} | "
                       f"{fmt(rg['mib_s'])} | |")
            for kind, name in (("config", "config"), ("small", "1 MiB blob"), ("big", "100 MiB blob")):
                out.append(f"| upstream GETs of the {name} | {entry['label']} | {pn['gets'][kind]} | "
                           f"{rg['gets'][kind]} | |")
            out.append(f"| upstream manifest GET / HEAD | {entry['label']} | {pn['manifest']['GET']} / "
                       f"{pn['manifest']['HEAD']} | {rg['manifest']['GET']} / {rg['manifest']['HEAD']} | |")
            out.append(f"| upstream requests in all | {entry['label']} | {pn['all']} | {rg['all']} | |")
            out.append(f"| RssAnon after (MiB) | {entry['label']} | {pn['anon'] / 1024:.1f} | "
                       f"{rg['anon'] / 1024:.1f} | |")
            out.append(f"| VmHWM after (MiB) | {entry['label']} | {pn['hwm'] / 1024:.1f} | "
                       f"{rg['hwm'] / 1024:.1f} | |")
            targets.append((f"cold {entry['label']}: pantry made one upstream GET per blob "
                            f"({pn['gets']['config']}/{pn['gets']['small']}/{pn['gets']['big']})",
                            all(g == 1 for g in pn["gets"].values())))
    out.append("")
    out.append("targets:")
    out += [f"- {'met   ' if ok else 'MISSED'} {text}" for text, ok in targets]
    print("\n".join(out), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description="pantry vs docker-registry's pull-through cache, "
                                                 "nginx static files as the ceiling")
    parser.add_argument("pantry", help="the pantry binary (a release build)")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--conns", default="1,16,64", help="wrk connection counts (default 1,16,64)")
    parser.add_argument("--herd-clients", type=int, default=50, help="clients of the cold rows (default 50)")
    parser.add_argument("--slow-rate", default="20m",
                        help="the slow upstream's rate per connection, nginx limit_rate syntax (default 20m)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold rows")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round of 1 s, 10 cold clients (about 1.5 minutes)")
    parser.add_argument("--workdir", help="where the scratch dir goes (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (image, logs, configs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.herd_clients = 1, 1, 10
    args.conns = [int(c) for c in args.conns.split(",") if c]
    return pypi_bench.drive("oci", parser, args, (WRK, nginx_pypi.NGINX, oci_registry.REGISTRY,
                                                  oci_registry.SKOPEO), run)

if __name__ == "__main__":
    sys.exit(main())
