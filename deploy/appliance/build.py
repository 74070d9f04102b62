#!/usr/bin/python3
"""Builds the pantry appliance image with `pantry build`, offline from Debian packages.

    deploy/appliance/build.py [--pantry BINARY] [--work DIR] [--tag NAME:TAG] [--data-dir DIR]
                              [--archive FILE] [--source FILE]... [--refresh-base] [--no-strip]

1. The base: a Debian 12 (bookworm) minbase root file system made by mmdebstrap from the
   machine's own apt sources, as a tar (base.tar). It holds the packages of packages.txt (runc,
   git, ca-certificates) and the packages of the libraries BINARY links (found with `ldd` and
   `dpkg -S`, so the base fits the binary: a release build needs Boost, OpenSSL, LMDB and
   friends; an ASan build libasan too), and the user pantry (uid and gid 8585) owning
   /var/lib/pantry. It is kept in WORK/base-KEY.tar, KEY a hash of everything it depends on
   (packages, sources, mmdebstrap options, SOURCE_DATE_EPOCH): later builds reuse it until the
   packages change or --refresh-base asks for a new one (for security updates). Making it needs
   root (mmdebstrap's root mode) and takes about 30-60 s.
2. The context, WORK/context: base.tar, BINARY as `pantry` (without its debug information
   unless --no-strip), and this directory's Containerfile and pantry.yaml.
3. `BINARY build -t TAG --data-dir DATA CONTEXT`: pantry's own builder, in process on DATA
   (default WORK/pantry-data, which keeps its layer cache for the next build). The image goes to
   that pantry's hosted registry as TAG (default local/pantry:VERSION).
4. With --archive FILE: a short `pantry serve` on DATA and `skopeo copy` write the image as a
   docker-archive that both `docker load -i FILE` and `podman load -i FILE` take, named
   pantry:VERSION.

Prints a JSON summary on stdout (tag, digest, archive, base, packages, seconds); progress on
stderr. Exit status 1 with the failing command's output when a step fails, 2 on bad arguments.
"""

import argparse
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Bump when the way the base is made changes, so that every machine makes it again.
FORMAT_VERSION = 1
SUITE = "bookworm"
USER_ID = 8585
DATA_DIR = "/var/lib/pantry"
MMDEBSTRAP = shutil.which("mmdebstrap") or "/usr/bin/mmdebstrap"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
TAR = shutil.which("tar") or "/bin/tar"
STRIP = shutil.which("strip") or "/usr/bin/strip"
APT_SOURCES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list",
               "/etc/apt/sources.list.d/*.sources")
# The customize hooks run in order on the finished root file system ("$1").
HOOKS = (
    # The host's files, which mmdebstrap copies in: a container runtime provides its own, and
    # they would make the base differ from one machine to the next.
    'rm -f "$1/etc/resolv.conf" "$1/etc/hostname"',
    # The user pantry, written directly (minbase has no useradd) so the ids never vary.
    f'echo "pantry:x:{USER_ID}:{USER_ID}:pantry:{DATA_DIR}:/usr/sbin/nologin" >> "$1/etc/passwd"',
    f'echo "pantry:x:{USER_ID}:" >> "$1/etc/group"',
    'echo "pantry:!:::::::" >> "$1/etc/shadow"',
    f'install -d -o {USER_ID} -g {USER_ID} -m 0750 "$1{DATA_DIR}"',
    # apt's package lists: 40+ MB an appliance does not need (apt-get update brings them back).
    'rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*.bin',
)
OPTIONS = ("--mode=root", "--variant=minbase",
           # Without the merged-usr hooks, usrmerge is installed in the chroot and drags in perl.
           "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
           # Documentation and translations (about a third of the files), as Debian's slim
           # images leave them out; the licences stay.
           *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("man", "doc", "info", "locale")),
           "--dpkgopt=path-include=/usr/share/doc/*/copyright",
           *(f"--customize-hook={h}" for h in HOOKS))


class BuildError(Exception):
    pass


def log(message):
    print(f"build.py: {message}", file=sys.stderr, flush=True)


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def run(cmd, what, **kw):
    """Runs CMD (output captured); raises BuildError naming WHAT and the output if it fails."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    except FileNotFoundError:
        raise BuildError(f"{what}: {cmd[0]} is missing (scripts/debian-packages.txt lists the "
                         "Debian packages; scripts/install-deps installs them)") from None
    if r.returncode != 0:
        raise BuildError(f"{what} failed (exit {r.returncode}): {' '.join(cmd)}\n"
                         f"{tail(r.stdout)}\n{tail(r.stderr)}")
    return r


def listed_packages(path=os.path.join(HERE, "packages.txt")):
    with open(path) as f:
        return [w for line in f for w in line.split("#", 1)[0].split()]


def linked_packages(binary):
    """The Debian packages of the shared libraries BINARY loads (ldd), by `dpkg -S`."""
    r = run(["ldd", binary], f"ldd of {binary}")
    packages = set()
    for line in r.stdout.splitlines():
        m = re.search(r"(/\S+) \(0x[0-9a-f]+\)$", line.strip())
        if not m:
            continue  # linux-vdso, or "statically linked"
        path = m.group(1)
        # With merged /usr, ldd's /lib/... is dpkg's /usr/lib/... or the other way round.
        other = path[len("/usr"):] if path.startswith("/usr/") else "/usr" + path
        for candidate in dict.fromkeys((path, os.path.realpath(path), other)):
            q = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if q.returncode == 0:
                packages.add(q.stdout.split(":", 1)[0].split(",")[0].strip())
                break
        else:
            raise BuildError(f"{binary} links {path}, which no Debian package installed here "
                             "owns; the base can hold only Debian packages (build pantry with "
                             "the libraries of scripts/debian-packages.txt)")
    return sorted(packages)


def apt_sources():
    """The machine's apt source files naming SUITE (mmdebstrap pastes a file given as a mirror
    into the base's sources.list): the Debian mirror, updates and security the machine uses."""
    found = []
    for pattern in APT_SOURCES:
        for path in sorted(glob.glob(pattern)):
            with open(path) as f:
                text = f.read()
            if re.search(rf"^[^#]*\b{SUITE}\b", text, re.M) and \
                    not re.search(r"^\s*Enabled:\s*no", text, re.M | re.I):
                found.append(path)
    if not found:
        raise BuildError(f"no apt source for Debian {SUITE} in {', '.join(APT_SOURCES)}; "
                         "name one with --source FILE (a sources.list or deb822 .sources file)")
    return found


def base_key(packages, sources, epoch):
    contents = []
    for path in sources:
        with open(path, "rb") as f:
            contents.append(hashlib.sha256(f.read()).hexdigest())
    recipe = {"format": FORMAT_VERSION, "suite": SUITE, "packages": sorted(packages),
              "options": list(OPTIONS), "sources": contents, "epoch": epoch}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure_base(work, packages, sources, epoch, refresh=False):
    """WORK/base-KEY.tar, made now unless it exists (or REFRESH). Returns (path, made now)."""
    if os.geteuid() != 0:
        raise BuildError("making the base needs root (mmdebstrap --mode=root)")
    key = base_key(packages, sources, epoch)
    base = os.path.join(work, f"base-{key}.tar")
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "base.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel builds make it once
        if os.path.exists(base) and not refresh:
            return base, False
        partial = f"{base}.part-{os.getpid()}"
        log(f"making the base with mmdebstrap ({', '.join(packages)})")
        started = time.monotonic()
        cmd = [MMDEBSTRAP, *OPTIONS, "--format=tar", "--include=" + ",".join(packages), SUITE,
               partial, *sources]
        try:
            run(cmd, "mmdebstrap", env=dict(os.environ, SOURCE_DATE_EPOCH=str(epoch)))
            # mmdebstrap writes device nodes into /dev; a container runtime mounts its own.
            run([TAR, "--delete", f"--file={partial}", "--wildcards", "./dev/?*"],
                f"removing /dev's entries from {partial}")
            os.rename(partial, base)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        log(f"base made in {time.monotonic() - started:.0f} s: {base}")
        for old in glob.glob(os.path.join(work, "base-*.tar")):
            if old != base:
                os.unlink(old)
    return base, True


def make_context(work, binary, base, strip=True):
    context = os.path.join(work, "context")
    shutil.rmtree(context, ignore_errors=True)
    os.makedirs(context)
    for name in ("Containerfile", "pantry.yaml"):
        shutil.copyfile(os.path.join(HERE, name), os.path.join(context, name))
    os.link(base, os.path.join(context, "base.tar"))
    if strip:
        # Debug information is most of the binary (of an ASan build's 540 MB, 320); the symbols
        # stay, so stack traces still name functions.
        run([STRIP, "--strip-debug", "-o", os.path.join(context, "pantry"), binary],
            f"strip --strip-debug {binary}")
    else:
        shutil.copyfile(binary, os.path.join(context, "pantry"))
    return context


def version_of(binary):
    return run([binary, "version"], f"{binary} version").stdout.split()[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_archive(binary, data_dir, image, archive, name):
    """Serves DATA_DIR for a moment and copies IMAGE (NAME@DIGEST in its hosted registry) into
    ARCHIVE, a docker-archive named NAME."""
    port = free_port()
    log_path = archive + ".serve.log"
    with open(log_path, "w") as out:
        serve = subprocess.Popen([binary, "serve", "--data-dir", data_dir, "--listen",
                                  f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if serve.poll() is not None or time.monotonic() > deadline:
                    with open(log_path) as f:
                        raise BuildError(f"pantry serve on {data_dir} did not start:\n"
                                         f"{tail(f.read())}") from None
                time.sleep(0.2)
        if os.path.exists(archive):
            os.unlink(archive)
        run([SKOPEO, "copy", "--src-tls-verify=false", f"docker://127.0.0.1:{port}/{image}",
             f"docker-archive:{archive}:{name}"], "skopeo copy to a docker-archive")
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    os.unlink(log_path)


def build(binary, work, tag=None, data_dir=None, archive=None, sources=None, refresh_base=False,
          strip=True):
    started = time.monotonic()
    binary = os.path.abspath(binary)
    if not os.access(binary, os.X_OK):
        raise BuildError(f"--pantry {binary}: not an executable file (build it: make release)")
    work = os.path.abspath(work)
    version = version_of(binary)
    tag = tag or f"local/pantry:{version}"
    data_dir = os.path.abspath(data_dir or os.path.join(work, "pantry-data"))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    packages = sorted(set(listed_packages()) | set(linked_packages(binary)))
    base, base_made = ensure_base(work, packages, sources or apt_sources(), epoch, refresh_base)
    context = make_context(work, binary, base, strip)
    log(f"pantry build -t {tag} (data dir {data_dir})")
    built = run([binary, "build", "-t", tag, "--data-dir", data_dir, context], "pantry build",
                env=dict(os.environ, SOURCE_DATE_EPOCH=str(epoch)))
    sys.stderr.write(built.stdout)
    digest = built.stdout.strip().splitlines()[-1].rsplit("@", 1)[1]
    summary = {"tag": tag, "digest": digest, "version": version, "base": base,
               "base_made": base_made, "packages": packages, "steps": built.stdout}
    if archive:
        archive = os.path.abspath(archive)
        name = f"pantry:{version}"
        export_archive(binary, data_dir, f"{tag.rsplit(':', 1)[0]}@{digest}", archive, name)
        summary.update(archive=archive, archive_name=name)
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build the pantry appliance image.")
    parser.add_argument("--pantry", default=os.path.join(REPO, "build/release/cli/pantry"),
                        help="the pantry binary to package and build with "
                             "(default: build/release/cli/pantry)")
    parser.add_argument("--work", default=os.path.join(REPO, "build/appliance"),
                        help="the base, the context and the build's data dir (default: "
                             "build/appliance)")
    parser.add_argument("--tag", help="the image's name in pantry's hosted registry (default: "
                                      "local/pantry:VERSION)")
    parser.add_argument("--data-dir", help="the data dir of the pantry that builds (default: "
                                           "WORK/pantry-data)")
    parser.add_argument("--archive", help="also write the image as a docker-archive here")
    parser.add_argument("--source", action="append", dest="sources",
                        help="an apt sources file for the base (default: the machine's files "
                             f"that name {SUITE})")
    parser.add_argument("--refresh-base", action="store_true",
                        help="make the base again (newer packages, security updates)")
    parser.add_argument("--no-strip", action="store_true",
                        help="package the binary as it is (default: without its debug "
                             "information)")
    args = parser.parse_args(argv)
    try:
        summary = build(args.pantry, args.work, args.tag, args.data_dir, args.archive,
                        args.sources, args.refresh_base, not args.no_strip)
    except BuildError as e:
        print(f"build.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
