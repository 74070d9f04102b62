#!/usr/bin/python3
"""One pantry against three behind HAProxy (deploy/haproxy/haproxy.cfg as shipped), in one run.

    bench/scale/run.py PANTRY_BINARY [--duration 5] [--rounds 3] [--conns 16,64]
                       [--herd-clients 50] [--keys 2000] [--workdir DIR] [--keep]

Everything runs on 127.0.0.1, upstream a real nginx (tests/fixtures/nginx_pypi.py) serving the
PyPI fixture plus the project "pantry-bench" with a 1 MiB and a 100 MiB file (as bench/pypi):

warm     one pantry on its own, and three pantries behind HAProxy, both warmed with every URL;
         wrk fetches the PEP 691 JSON page of pantry-bench and its 1 MiB file, each URL at each
         connection count for --duration seconds, alternating between the two set-ups, --rounds
         times; medians of req/s and p99, and the ratio cluster / alone. On the same 2 cores the
         cluster cannot be faster: the ratio is the cost of the extra hop (and of three
         processes sharing the cores), not a speed-up.
herd     three fresh pantries behind a fresh HAProxy: --herd-clients clients GET the uncached
         100 MiB file at once through HAProxy; the wall time, and how many GETs of the file
         reached the upstream across the three instances (target: 1).
keys     --keys distinct paths (/simple/bench-key-N/) through HAProxy in front of three
         instances, then in front of four (a fourth instance added, the config's cache backend
         extended by one server line); the share of paths that HAProxy sends to another
         instance than before (target: about 1/4, what consistent hashing promises), and the
         share that moved between the three old instances (target: 0).

Exit status: 0; 1 if a request failed, the herd made other than one upstream GET, or keys moved
between old instances; 2 if a server did not start or another error stopped the run. Needs the
Debian packages haproxy, nginx and wrk.
"""

import argparse
import collections
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures"))
sys.path.insert(0, FIXTURES)
import haproxy  # noqa: E402
import make_pypi_upstream  # noqa: E402
import nginx_pypi  # noqa: E402
import pantry_serve  # noqa: E402

_spec = importlib.util.spec_from_file_location("pypi_bench", os.path.join(HERE, "..", "pypi", "run.py"))
pb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pb)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
log = pb.log
Failure = pb.Failure


def start_pantry(args, work, name, upstream):
    return pantry_serve.Pantry(args.pantry, os.path.join(work, name), upstream.index_url,
                               upstream_timeouts=pb.PANTRY_UPSTREAM_TIMEOUTS)


def start_cluster(args, work, tag, upstream, instances=3):
    pantries = [start_pantry(args, work, f"{tag}-pantry{i + 1}", upstream)
                for i in range(instances)]
    lb = haproxy.HAProxy(work, pantries, name=f"{tag}-haproxy")
    for i in range(instances):
        lb.wait_status(f"pantry{i + 1}", "UP")
    return lb, pantries


def urls_through(base_url, pantry_like, files):
    """The page URL and the file URLs as a client of BASE_URL sees them (its JSON page)."""
    page, urls, page_size = pb.pantry_urls(pantry_like, files)
    return {"page": base_url + page,
            "small": urls[pb.SMALL[0]],
            "big": urls[pb.BIG[0]], "page_size": page_size}


class Front:
    """What pb.pantry_urls needs of a server: url(path)."""

    def __init__(self, base):
        self.base = base

    def url(self, path):
        return self.base + path

    def tail(self, lines=40):
        return ""


def warm(args, work, upstream, files, lua, failures):
    alone = start_pantry(args, work, "alone", upstream)
    lb, pantries = start_cluster(args, work, "warm", upstream)
    servers = [alone, lb] + pantries
    try:
        targets = {}
        for who, front in (("alone", alone), ("cluster", Front(lb.url("")))):
            t = urls_through(front.url(""), front, files)
            for name, expect in files.items():
                url = t["small"] if name == pb.SMALL[0] else t["big"]
                pb.check_file(who, url, expect)
                pb.check_file(who, url, expect)
            targets[who] = t
        rows = []
        for kind, label, headers in (("page", "JSON page", [f"Accept: {pb.JSON_TYPE}"]),
                                     ("small", "1 MiB file", [])):
            for conns in args.conns:
                rows.append({"kind": kind, "label": label, "headers": headers, "conns": conns,
                             "runs": {"alone": [], "cluster": []}})
        for rnd in range(args.rounds):
            order = ("alone", "cluster") if rnd % 2 == 0 else ("cluster", "alone")
            for row in rows:
                for who in order:
                    s = pb.wrk(targets[who][row["kind"]], row["conns"], args.duration,
                               row["headers"], lua)
                    row["runs"][who].append(s)
                    pb.note_wrk(s, f"round {rnd + 1}/{args.rounds}", row, who, failures, (10, 7))
        print()
        print("| row | conns | alone req/s | cluster req/s | cluster ÷ alone | alone p99 ms | "
              "cluster p99 ms |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            rs = {w: statistics.median(s["req_s"] for s in row["runs"][w]) for w in row["runs"]}
            p99 = {w: statistics.median(s["p99_us"] for s in row["runs"][w]) / 1000
                   for w in row["runs"]}
            print(f"| {row['label']} | {row['conns']} | {rs['alone']:.0f} | {rs['cluster']:.0f} | "
                  f"{rs['cluster'] / rs['alone']:.2f} | {p99['alone']:.2f} | "
                  f"{p99['cluster']:.2f} |")
        spread = [p.blobs()[0] for p in pantries]
        print(f"\nblobs held by each cluster instance after the warm runs: {spread}")
    finally:
        for s in servers:
            s.stop()


def herd(args, work, upstream, files, failures):
    lb, pantries = start_cluster(args, work, "herd", upstream)
    try:
        front = Front(lb.url(""))
        t = urls_through(front.url(""), front, files)
        before = pb.upstream_gets(upstream, pb.BIG[0])
        wall, bad = pb.herd(t["big"], args.herd_clients, files[pb.BIG[0]])
        gets = pb.settled_upstream_gets(upstream, pb.BIG[0]) - before
        failures.extend(f"herd: {b}" for b in bad)
        if gets != 1:
            failures.append(f"herd: {gets} upstream GETs of the 100 MiB file across the cluster "
                            f"(want 1)")
        served = collections.Counter(s for s, _, p in lb.routed() if p.endswith(pb.BIG[0]))
        print()
        print(f"| cold: {args.herd_clients} clients GET the uncached 100 MiB file through "
              f"HAProxy | three instances |")
        print("|---|---:|")
        print(f"| wall time until the last client has all bytes (s) | {wall:.2f} |")
        print(f"| aggregate MiB/s to the clients | "
              f"{args.herd_clients * files[pb.BIG[0]]['size'] / pb.MIB / wall:.0f} |")
        print(f"| upstream GETs of the file, all instances | {gets} |")
        print(f"| instances that served it | {len(served)} ({dict(served)}) |")
    finally:
        lb.stop()
        for p in pantries:
            p.stop()


def keys(args, work, upstream, failures):
    paths = [f"/simple/bench-key-{i}/" for i in range(args.keys)]

    def route(lb):
        mark = len(lb.routed())
        for path in paths:
            status = pb.fetch(lb.url(path))[0]
            if status not in (200, 404):
                raise Failure(f"keys: GET {path} through HAProxy: {status}")
        time.sleep(0.5)  # HAProxy logs each request when it ends
        got = {}
        for server, _, path in lb.routed()[mark:]:
            got[urllib.parse.unquote(path)] = server
        missing = [p for p in paths if p not in got]
        if missing:
            raise Failure(f"keys: {len(missing)} requests not in HAProxy's log, e.g. {missing[:3]}")
        return got

    pantries = [start_pantry(args, work, f"keys-pantry{i + 1}", upstream) for i in range(4)]
    try:
        lb3 = haproxy.HAProxy(work, pantries[:3], name="keys-haproxy3")
        try:
            for i in range(3):
                lb3.wait_status(f"pantry{i + 1}", "UP")
            three = route(lb3)
        finally:
            lb3.stop()
        lb4 = haproxy.HAProxy(work, pantries, name="keys-haproxy4")
        try:
            for i in range(4):
                lb4.wait_status(f"pantry{i + 1}", "UP")
            four = route(lb4)
        finally:
            lb4.stop()
    finally:
        for p in pantries:
            p.stop()
    moved = [p for p in paths if three[p] != four[p]]
    to_new = [p for p in moved if four[p] == "pantry4"]
    between_old = len(moved) - len(to_new)
    per_three = collections.Counter(three.values())
    per_four = collections.Counter(four.values())
    print()
    print(f"| keys: {args.keys} paths, three instances, then a fourth added | |")
    print("|---|---:|")
    print(f"| paths per instance with three | {dict(sorted(per_three.items()))} |")
    print(f"| paths per instance with four | {dict(sorted(per_four.items()))} |")
    print(f"| share of paths that moved (target about 0.25) | {len(moved) / len(paths):.3f} |")
    print(f"| of them to the new instance | {len(to_new)} of {len(moved)} |")
    print(f"| moved between old instances (target 0) | {between_old} |")
    if between_old:
        failures.append(f"keys: {between_old} paths moved between the old instances when a "
                        f"fourth was added")


def run(args, work, failures):
    log(f"bench/scale: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores, "
        f"load average {pb.loadavg()}; work dir {work}")
    log(subprocess.run([args.pantry, "version"], capture_output=True, text=True).stdout.strip()
        + "; " + subprocess.run([HAPROXY, "-v"], capture_output=True,
                                text=True).stdout.split("\n")[0])
    lua = os.path.join(work, "summary.lua")
    with open(lua, "w") as f:
        f.write(pb.WRK_LUA)
    tree = os.path.join(work, "upstream")
    upstream = nginx_pypi.start(tree, build=True, workdir=os.path.join(work, "upstream-nginx"))
    try:
        files = make_pypi_upstream.add_random_project(tree, upstream.files_base, pb.PROJECT,
                                                      [pb.SMALL, pb.BIG])
        if not args.no_warm:
            warm(args, work, upstream, files, lua, failures)
        herd(args, work, upstream, files, failures)
        keys(args, work, upstream, failures)
        log(f"bench/scale: done, load average {pb.loadavg()}")
    finally:
        upstream.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description="one pantry against three behind HAProxy")
    parser.add_argument("pantry", help="the pantry binary (a release build)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--conns", default="16,64", help="wrk connection counts (default 16,64)")
    parser.add_argument("--herd-clients", type=int, default=50,
                        help="clients of the cold herd (default 50)")
    parser.add_argument("--keys", type=int, default=2000,
                        help="distinct paths of the key-movement count (default 2000)")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm rows")
    parser.add_argument("--workdir", help="where the scratch dir goes (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    args = parser.parse_args(argv)
    args.conns = [int(c) for c in args.conns.split(",") if c]
    return pb.drive("scale", parser, args, (pb.WRK, nginx_pypi.NGINX, HAPROXY), run)


if __name__ == "__main__":
    sys.exit(main())
