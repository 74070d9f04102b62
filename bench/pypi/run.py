#!/usr/bin/python3
"""pantry's PyPI proxy against nginx as a caching reverse proxy, on the same workload, in one run.

    bench/pypi/run.py PANTRY_BINARY [--duration 5] [--rounds 5] [--conns 1,16,64]
                      [--herd-clients 100] [--no-cold] [--workdir DIR] [--keep]

Everything runs on 127.0.0.1:

  upstream  tests/fixtures/nginx_pypi.py serving a make_pypi_upstream.py tree plus one extra
            project, "pantry-bench", with a 1 MiB and a 100 MiB file (random bytes);
  pantry    `PANTRY_BINARY serve` (tests/fixtures/pantry_serve.py: 2 server threads) on it;
  nginx     a second nginx, a caching reverse proxy (proxy_cache) in front of the same upstream.

Warm rows: after one request of each URL through each server (bodies checked against their
sha256), `wrk` fetches one URL over and over -- the PEP 691 JSON page of pantry-bench, the
1 MiB file, the 100 MiB file -- at each connection count (wrk threads = min(conns, 2)), for
--duration seconds, alternating between the servers, --rounds times; the table shows medians
and the ratio pantry / nginx (above 1: pantry is faster).  pantry is asked for /simple/<p>/ and
the /files/... URLs of its own JSON page, nginx for the upstream's own /simple/<p>/ and
/packages/... paths.  Then each server's RssAnon (nginx: master + all its children) and
pantry's VmHWM.

Cold row: fresh pantry and fresh nginx (empty caches), one after the other: --herd-clients
clients GET the 100 MiB file at once; the wall time until the last one has all its bytes, and
how many GETs of the file reached the upstream (its access log).  pantry must make exactly one.

Exit status: 0; 1 if a request failed (wrk non-2xx/3xx or socket errors, a wrong body, a herd
client error) or pantry's herd made other than one upstream GET; 2 if a server did not start or
another error stopped the run.  Needs the Debian packages nginx and wrk; stdlib only.
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures"))
sys.path.insert(0, FIXTURES)
import make_pypi_upstream  # noqa: E402
import nginx_pypi  # noqa: E402
import pantry_serve  # noqa: E402

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PROJECT = "pantry-bench"
MIB = 1 << 20
SMALL = ("pantry_bench-1.0-py3-none-any.whl", 1 * MIB)
BIG = ("pantry_bench-2.0-py3-none-any.whl", 100 * MIB)
WRK = shutil.which("wrk") or "/usr/bin/wrk"
WRK_TIMEOUT = "60s"  # per request: a 100 MiB body over 64 connections takes seconds
PANTRY_UPSTREAM_TIMEOUTS = "connect_timeout: 5s, header_timeout: 10s, idle_timeout: 10s"

# wrk prints its own summary; this adds the exact counts (its text rounds bytes to 0.01 GB).
WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format(
    "BENCH-SUMMARY duration_us=%.0f requests=%.0f bytes=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f p99_us=%.0f\\n",
    summary.duration, summary.requests, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(99)))
end
"""


class Failure(Exception):
    """A request that failed: reported, the run goes on, the exit status is 1."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------- the upstream tree

# ---------------------------------------------------------------- nginx as a caching proxy

def proxy_conf(workdir, port, upstream_port):
    """The anchor: nginx 1.22 as a caching reverse proxy in front of the upstream's index port
    (which serves /simple/ and /packages/)."""
    return nginx_pypi.conf_head(workdir, "bench/pypi/run.py", 2, connections=4096) + f"""
    proxy_cache_path {workdir}/cache levels=1:2 keys_zone=pypi:10m max_size=2g inactive=60m
                     use_temp_path=off;
    upstream pypi_upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://pypi_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
            proxy_cache pypi;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
}}
"""


class Nginx:
    """nginx on a free port with the config conf(workdir, port) returns, started in WORKDIR
    (made with SUBDIRS), retried on another port if the first is taken meanwhile."""

    def __init__(self, workdir, conf, subdirs=("logs", "tmp"), attempts=3):
        self.workdir = os.path.abspath(workdir)
        for sub in subdirs:
            os.makedirs(os.path.join(self.workdir, sub), exist_ok=True)
        self.conf = os.path.join(self.workdir, "nginx.conf")
        self.error_log = os.path.join(self.workdir, "logs", "error.log")
        for attempt in range(attempts):
            self.port = nginx_pypi.free_port()
            with open(self.conf, "w") as f:
                f.write(conf(self.workdir, self.port))
            self.process = subprocess.Popen(
                [nginx_pypi.NGINX, "-p", self.workdir + "/", "-c", self.conf, "-e", self.error_log],
                stdin=subprocess.DEVNULL, preexec_fn=nginx_pypi.die_with_parent)
            try:
                nginx_pypi.wait_listening(self.process, (self.port,), self.error_log)
                return
            except RuntimeError:
                if self.process.poll() is None:
                    self.process.kill()
                    self.process.wait()
                if attempt + 1 == attempts:
                    raise

    @property
    def url_base(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path):
        return self.url_base + path

    def running(self):
        return self.process.poll() is None

    def stop(self):
        nginx_pypi.stop_process(self.process)


def nginx_proxy(workdir, upstream_port):
    return Nginx(workdir, lambda w, port: proxy_conf(w, port, upstream_port),
                 subdirs=("logs", "tmp", "cache"))


# ---------------------------------------------------------------- /proc

def proc_status(pid):
    """{field: kB} of /proc/PID/status for the memory fields."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def child_pids(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def memory(server):
    """(RssAnon kB, VmHWM kB, process count): pantry's own; nginx's summed over the master and
    its children (workers, cache manager/loader)."""
    pids = [server.process.pid]
    if isinstance(server, Nginx):
        pids += child_pids(server.process.pid)
    anon = hwm = 0
    for pid in pids:
        try:
            s = proc_status(pid)
        except OSError:
            continue
        anon += s.get("RssAnon", 0)
        hwm += s.get("VmHWM", 0)
    return anon, hwm, len(pids)


# ---------------------------------------------------------------- clients

def fetch(url, headers=None, timeout=120):
    status, hdrs, body = pantry_serve.get(url, headers, timeout=timeout)
    return status, hdrs, body


def check_file(name, url, expect):
    status, hdrs, body = fetch(url)
    if status != 200 or len(body) != expect["size"] or hashlib.sha256(body).hexdigest() != expect["sha256"]:
        raise Failure(f"{name}: GET {url}: {status}, {len(body)} bytes "
                      f"(want 200, {expect['size']} bytes, sha256 {expect['sha256'][:12]}...)")
    return hdrs


def wrk(url, conns, duration, headers, lua_path):
    threads = min(conns, 2)
    cmd = [WRK, "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--timeout", WRK_TIMEOUT,
           "-s", lua_path]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 180)
    m = re.search(r"BENCH-SUMMARY (.*)", r.stdout)
    if r.returncode != 0 or not m:
        raise Failure(f"wrk failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    s = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", r.stdout)
    s["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    secs = s["duration_us"] / 1e6
    s["req_s"] = s["requests"] / secs
    s["mib_s"] = s["bytes"] / secs / MIB
    s["errors"] = max(s["non2xx"], s["status"]) + s["connect"] + s["read"] + s["write"]
    s["text"] = r.stdout
    return s


def note_wrk(s, where, row, who, failures, widths):
    """Logs one wrk run (WHERE: "round i/n") and adds its errors, if any, to FAILURES; WIDTHS are
    the columns of the row label and the server name."""
    log(f"{where} {row['label']:>{widths[0]}} c={row['conns']:<3} {who:>{widths[1]}}: "
        f"{s['req_s']:10.1f} req/s {s['mib_s']:9.1f} MiB/s"
        + (f"  ERRORS non2xx={s['non2xx']} connect={s['connect']} read={s['read']} "
           f"write={s['write']} timeout={s['timeout']}" if s["errors"] else "")
        + f"  load {loadavg()}")
    if s["errors"]:
        failures.append(f"{who} {row['label']} c={row['conns']} {where}: "
                        f"{s['non2xx']} non-2xx/3xx, socket errors connect {s['connect']} "
                        f"read {s['read']} write {s['write']}\n{s['text']}")


def release_together(clients, fetch, timeout):
    """CLIENTS threads wait at a barrier, are released together, and each runs fetch(i), which
    returns (ok, detail) or raises.  Returns (seconds from the release until the last client
    ended, [failures])."""
    barrier = threading.Barrier(clients + 1)
    results = [None] * clients

    def client(i):
        try:
            barrier.wait(timeout=60)
            ok, detail = fetch(i)
            results[i] = (ok, detail, time.monotonic())
        except Exception as e:  # noqa: BLE001 -- any error is this client's failure
            results[i] = (False, repr(e), time.monotonic())

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait(timeout=60)
    t0 = time.monotonic()
    for t in threads:
        t.join(timeout=timeout + 60)
    bad = [f"client {i}: {r[1] if r else 'still running'}" for i, r in enumerate(results)
           if not r or not r[0]]
    ends = [r[2] for r in results if r]
    return (max(ends) - t0 if ends else float("nan")), bad


def herd(url, clients, expect, timeout=600):
    """`clients` threads GET url at once; returns (wall seconds, [failures])."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")

    def fetch(i):
        buf = memoryview(bytearray(MIB))
        digest = hashlib.sha256() if i == 0 else None  # one client checks the bytes themselves
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        conn.request("GET", path)
        r = conn.getresponse()
        n = 0
        while True:
            k = r.readinto(buf)
            if not k:
                break
            if digest:
                digest.update(buf[:k])
            n += k
        conn.close()
        ok = r.status == 200 and n == expect["size"] and (
            not digest or digest.hexdigest() == expect["sha256"])
        return ok, f"{r.status}, {n} bytes"

    return release_together(clients, fetch, timeout)


def upstream_gets(upstream, filename):
    return sum(1 for e in upstream.log_entries()
               if e.get("method") == "GET" and e.get("uri", "").split("?")[0].endswith("/" + filename))


def settled_upstream_gets(upstream, filename, quiet=1.0, limit=15.0):
    """The count once the upstream's access log has stopped growing (nginx logs at request end)."""
    deadline = time.monotonic() + limit
    last = upstream_gets(upstream, filename)
    stable_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - stable_since < quiet:
        time.sleep(0.2)
        now = upstream_gets(upstream, filename)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


# ---------------------------------------------------------------- the run

def pantry_urls(pantry, files):
    """pantry's page URL and its /files/... URL for each file, from its own JSON page."""
    page = f"/simple/{PROJECT}/"
    status, _, body = fetch(pantry.url(page), {"Accept": JSON_TYPE})
    if status != 200:
        raise Failure(f"pantry: GET {page} (JSON): {status} {body[:300]!r}\n{pantry.tail()}")
    listed = {f["filename"]: urllib.parse.urljoin(pantry.url(page), f["url"])
              for f in json.loads(body)["files"]}
    missing = set(files) - set(listed)
    if missing:
        raise Failure(f"pantry's page of {PROJECT} lacks {sorted(missing)}")
    return page, {name: listed[name].split("#")[0] for name in files}, len(body)


def warm_pantry(pantry, files):
    page, urls, page_size = pantry_urls(pantry, files)
    for name, expect in files.items():
        check_file("pantry", urls[name], expect)  # first: fetched from upstream, cached
        check_file("pantry", urls[name], expect)  # second: from the cache
    return {"page": pantry.url(page), "small": urls[SMALL[0]], "big": urls[BIG[0]], "page_size": page_size}


def warm_nginx(proxy, files):
    page = f"/simple/{PROJECT}/"
    for attempt in range(2):
        status, hdrs, body = fetch(proxy.url(page), {"Accept": JSON_TYPE})
        if status != 200 or json.loads(body)["name"] != PROJECT:
            raise Failure(f"nginx: GET {page} (JSON): {status} {body[:300]!r}")
    if hdrs.get("X-Cache-Status") != "HIT":
        raise Failure(f"nginx: second GET {page} was {hdrs.get('X-Cache-Status')}, not a cache HIT")
    for name, expect in files.items():
        check_file("nginx", proxy.url(expect["path"]), expect)
        hdrs = check_file("nginx", proxy.url(expect["path"]), expect)
        if hdrs.get("X-Cache-Status") != "HIT":
            raise Failure(f"nginx: second GET of {name} was {hdrs.get('X-Cache-Status')}, not a HIT")
    return {"page": proxy.url(page), "small": proxy.url(files[SMALL[0]]["path"]),
            "big": proxy.url(files[BIG[0]]["path"]), "page_size": len(body)}


def fmt(x):
    if x is None or x != x:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def run(args, work, failures):
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = loadavg()
    versions = {
        "pantry": subprocess.run([args.pantry, "version"], capture_output=True, text=True).stdout.strip(),
        "nginx": subprocess.run([nginx_pypi.NGINX, "-v"], capture_output=True, text=True).stderr.strip(),
        "wrk": subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip(),
    }
    log(f"bench/pypi: {started}, {os.cpu_count()} cores, load average {load_start}; work dir {work}")
    lua = os.path.join(work, "summary.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)

    tree = os.path.join(work, "upstream")
    upstream = nginx_pypi.start(tree, build=True, workdir=os.path.join(work, "upstream-nginx"))
    servers = [upstream]
    try:
        files = make_pypi_upstream.add_random_project(tree, upstream.files_base, PROJECT, [SMALL, BIG])
        pantry = pantry_serve.Pantry(args.pantry, os.path.join(work, "pantry"), upstream.index_url,
                                     upstream_timeouts=PANTRY_UPSTREAM_TIMEOUTS)
        servers.append(pantry)
        proxy = nginx_proxy(os.path.join(work, "nginx-proxy"), upstream.index_port)
        servers.append(proxy)

        targets = {"pantry": warm_pantry(pantry, files), "nginx": warm_nginx(proxy, files)}
        procs = {"pantry": pantry, "nginx": proxy}
        log(f"warm: JSON page {targets['pantry']['page_size']} B from pantry, "
            f"{targets['nginx']['page_size']} B from nginx")

        rows = []
        for kind, label, headers in (("page", "JSON page", [f"Accept: {JSON_TYPE}"]),
                                     ("small", "1 MiB file", []),
                                     ("big", "100 MiB file", [])):
            for conns in args.conns:
                rows.append({"kind": kind, "label": label, "headers": headers, "conns": conns,
                             "runs": {"pantry": [], "nginx": []}, "upstream": {"pantry": 0, "nginx": 0}})
        peak_anon = {"pantry": 0, "nginx": 0}
        upstream_lines = len(upstream.log_entries())
        for rnd in range(args.rounds):
            order = ("pantry", "nginx") if rnd % 2 == 0 else ("nginx", "pantry")
            for row in rows:
                for who in order:
                    url = targets[who][row["kind"]]
                    s = wrk(url, row["conns"], args.duration, row["headers"], lua)
                    row["runs"][who].append(s)
                    now = len(upstream.log_entries())
                    row["upstream"][who] += now - upstream_lines
                    upstream_lines = now
                    peak_anon[who] = max(peak_anon[who], memory(procs[who])[0])
                    note_wrk(s, f"round {rnd + 1}/{args.rounds}", row, who, failures, (12, 6))
                    if who == "pantry" and pantry.process.poll() is not None:
                        raise RuntimeError(f"pantry exited with {pantry.process.returncode}:\n{pantry.tail()}")
                    if who == "nginx" and proxy.process.poll() is not None:
                        raise RuntimeError(f"nginx proxy exited: {nginx_pypi.tail(proxy.error_log)}")

        mem = {who: memory(procs[who]) for who in procs}
        pantry_hwm = proc_status(pantry.process.pid).get("VmHWM", 0)
        pantry_rss = proc_status(pantry.process.pid)
        proxy.stop()
        servers.remove(proxy)
        pantry.stop()
        servers.remove(pantry)

        cold = None
        if not args.no_cold:
            cold = {}
            big = files[BIG[0]]
            for who in ("pantry", "nginx"):
                if who == "pantry":
                    srv = pantry_serve.Pantry(args.pantry, os.path.join(work, "pantry-cold"),
                                              upstream.index_url, upstream_timeouts=PANTRY_UPSTREAM_TIMEOUTS)
                    servers.append(srv)
                    url = pantry_urls(srv, files)[1][BIG[0]]
                else:
                    srv = nginx_proxy(os.path.join(work, "nginx-cold"), upstream.index_port)
                    servers.append(srv)
                    url = srv.url(big["path"])
                before = settled_upstream_gets(upstream, BIG[0])
                log(f"cold: {args.herd_clients} clients GET the uncached 100 MiB file from {who}")
                wall, bad = herd(url, args.herd_clients, big)
                gets = settled_upstream_gets(upstream, BIG[0]) - before
                anon, hwm, _ = memory(srv)
                cold[who] = {"wall": wall, "gets": gets, "bad": bad, "anon": anon, "hwm": hwm,
                             "mib_s": args.herd_clients * big["size"] / MIB / wall if wall == wall else None}
                log(f"cold {who}: {wall:.2f} s, {gets} upstream GET(s), {len(bad)} failed clients, "
                    f"RssAnon {anon / 1024:.1f} MiB, load {loadavg()}")
                if bad:
                    failures.append(f"cold {who}: {len(bad)} of {args.herd_clients} clients failed: {bad[:5]}")
                srv.stop()
                servers.remove(srv)
            if cold["pantry"]["gets"] != 1:
                failures.append(f"cold pantry: {cold['pantry']['gets']} upstream GETs of the file, want 1")
    finally:
        for srv in reversed(servers):
            try:
                srv.stop()
            except Exception:  # noqa: BLE001 -- stop the others anyway
                traceback.print_exc()

    # ------------------------------------------------------------ report
    load_end = loadavg()
    out = []
    out.append(f"# bench/pypi/run.py, {started}: {os.cpu_count()} cores, "
               f"load average {load_start} at start, {load_end} at end")
    out.append(f"# {versions['pantry']}; {versions['nginx']}; {versions['wrk']}")
    out.append(f"# warm: {args.rounds} rounds of {args.duration} s per row and server, medians; "
               f"ratio = pantry / nginx of req/s (page) or MiB/s (files; wrk counts only completed "
               f"responses, MiB/s counts every byte read), above 1: pantry faster; JSON page {targets['pantry']['page_size']} B "
               f"(pantry) / {targets['nginx']['page_size']} B (nginx)")
    out.append("")
    out.append("| row | conns | pantry req/s | nginx req/s | ratio | pantry MiB/s | nginx MiB/s "
               "| pantry p99 ms | nginx p99 ms |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        med = {who: statistics.median(s["req_s"] for s in row["runs"][who]) for who in ("pantry", "nginx")}
        mib = {who: statistics.median(s["mib_s"] for s in row["runs"][who]) for who in ("pantry", "nginx")}
        files_row = row["kind"] != "page"
        ratio = (mib["pantry"] / mib["nginx"]) if files_row else (med["pantry"] / med["nginx"])
        p99 = {who: statistics.median(s["p99_us"] for s in row["runs"][who]) / 1000
               for who in ("pantry", "nginx")}
        out.append(f"| {row['label']} | {row['conns']} | {fmt(med['pantry'])} | {fmt(med['nginx'])} | "
                   f"{ratio:.2f} | "
                   f"{fmt(mib['pantry']) if files_row else ''} | {fmt(mib['nginx']) if files_row else ''} | "
                   f"{p99['pantry']:.2f} | {p99['nginx']:.2f} |")
    up = {who: sum(r["upstream"][who] for r in rows) for who in ("pantry", "nginx")}
    out.append("")
    out.append(f"upstream requests during the warm runs: pantry {up['pantry']}, nginx {up['nginx']}")
    out.append(f"memory after the warm runs: pantry RssAnon {mem['pantry'][0] / 1024:.1f} MiB "
               f"(VmRSS {pantry_rss.get('VmRSS', 0) / 1024:.1f} MiB, of it RssFile "
               f"{pantry_rss.get('RssFile', 0) / 1024:.1f} MiB: the mapped cache), peak VmHWM "
               f"{pantry_hwm / 1024:.1f} MiB; nginx RssAnon {mem['nginx'][0] / 1024:.1f} MiB summed over "
               f"{mem['nginx'][2]} processes (master, workers, cache manager/loader)")
    out.append(f"highest RssAnon seen after any wrk run: pantry {peak_anon['pantry'] / 1024:.1f} MiB, "
               f"nginx {peak_anon['nginx'] / 1024:.1f} MiB")
    if cold:
        p, n = cold["pantry"], cold["nginx"]
        ratio = (n["wall"] / p["wall"]) if p["wall"] == p["wall"] and n["wall"] == n["wall"] else float("nan")
        out.append("")
        out.append(f"| cold: {args.herd_clients} clients GET the uncached 100 MiB file | pantry | nginx | ratio |")
        out.append("|---|---:|---:|---:|")
        out.append(f"| wall time until the last client has all bytes (s) | {p['wall']:.2f} | {n['wall']:.2f} | "
                   f"{ratio:.2f} |")
        out.append(f"| aggregate MiB/s to the clients | {fmt(p['mib_s'])} | {fmt(n['mib_s'])} | {ratio:.2f} |")
        out.append(f"| upstream GETs of the file | {p['gets']} | {n['gets']} | |")
        out.append(f"| RssAnon after (MiB; nginx: all processes) | {p['anon'] / 1024:.1f} | "
                   f"{n['anon'] / 1024:.1f} | |")
        out.append(f"| VmHWM after (MiB; nginx: sum of per-process peaks) | {p['hwm'] / 1024:.1f} | "
                   f"{n['hwm'] / 1024:.1f} | |")
    print("\n".join(out), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description="pantry vs nginx proxy_cache on one PyPI workload")
    parser.add_argument("pantry", help="the pantry binary (a release build)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--conns", default="1,16,64", help="wrk connection counts (default 1,16,64)")
    parser.add_argument("--herd-clients", type=int, default=100, help="clients of the cold row (default 100)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold row")
    parser.add_argument("--workdir", help="where the scratch dir goes (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (trees, logs, configs)")
    args = parser.parse_args(argv)
    args.conns = [int(c) for c in args.conns.split(",") if c]
    return drive("pypi", parser, args, (WRK, nginx_pypi.NGINX), run)


def drive(name, parser, args, tools, run_fn):
    """What every bench/*/run.py main does once its arguments are parsed: check the binaries,
    run `run_fn(args, work, failures)` in a scratch dir, report, and return the exit status
    (0 all good, 1 a failed check, 2 an error)."""
    args.pantry = os.path.abspath(args.pantry)
    if not os.access(args.pantry, os.X_OK):
        parser.error(f"{args.pantry} is not an executable")
    for tool in tools:
        if not os.access(tool, os.X_OK):
            parser.error(f"{tool} not found: apt-get install {os.path.basename(tool)}")

    work = tempfile.mkdtemp(prefix=f"pantry-bench-{name}-", dir=args.workdir)
    failures = []
    status = 0
    try:
        run_fn(args, work, failures)
        if failures:
            log(f"bench/{name}: FAILED:\n" + "\n".join(failures))
            status = 1
    except Failure as e:
        log(f"bench/{name}: FAILED: {e}")
        status = 1
    except Exception:  # noqa: BLE001 -- a server that did not start, a crash, a bug here
        traceback.print_exc()
        log(f"bench/{name}: ERROR")
        status = 2
    if status or args.keep:
        log(f"scratch dir kept (logs, configs, caches): {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return status

if __name__ == "__main__":
    sys.exit(main())
