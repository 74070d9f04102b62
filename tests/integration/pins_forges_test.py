#!/usr/bin/python3
"""`pantry pins bump --open-prs` against a forge the test serves on loopback.

The forge (http.server on 127.0.0.1) speaks the pull request APIs of GitHub, GitLab and Gitea
under /github, /gitlab and /gitea, and checks each request as their REST documentation describes
it: the method and path, the auth header (GitHub "Authorization: Bearer", GitLab "PRIVATE-TOKEN",
Gitea "Authorization: token"), a JSON body with exactly the documented fields. It answers as they
do: 201 with the new pull request, 422 (GitHub, Gitea) or 409 (GitLab) for a branch that has an
open one already, 401 for a wrong token; a comment on a pull request (GitHub and Gitea: POST
/repos/O/R/issues/N/comments, GitLab: POST /projects/ID/merge_requests/N/notes, {body}) gets 201
with the comment, 404 for a pull request that does not exist (pins_life_test.py uses the forge
too). The repositories and the index are pins_test.py's fixtures: the pantry-demo tree behind
nginx and pantry, a git repository the test makes.

Run by ctest with the pantry binary as the first argument:
    tests/integration/pins_forges_test.py build/debug/cli/pantry
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)
from pantry_serve import Pantry  # noqa: E402
import pins_test  # noqa: E402
from pins_test import pinned, start_index  # noqa: E402

PANTRY = None
TOKEN = "s3cret-forge-token"
UPGRADES = ["pantry/pins/pantry-demo-app-2.0", "pantry/pins/pantry-demo-lib-1.1",
            "pantry/pins/pantry-demo-util-1.0"]

# What each forge's docs name: the create fields, the update fields, the listing's state values.
CREATE_FIELDS = {"github": {"title", "head", "base", "body"},
                 "gitea": {"head", "base", "title", "body"},
                 "gitlab": {"source_branch", "target_branch", "title", "description"}}


class Forge:
    """Pull requests of one repository per forge kind, and every request that reached it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.prs = {"github": [], "gitlab": [], "gitea": []}
        self.requests = []    # (kind, method, path, json body or None)
        self.violations = []  # what a request did that the docs do not allow

    def view(self, kind, pr):
        base = f"https://{kind}.example/team/app"
        if kind == "gitlab":
            state = "merged" if pr["merged"] else ("opened" if pr["open"] else "closed")
            return {"iid": pr["number"], "web_url": f"{base}/-/merge_requests/{pr['number']}",
                    "state": state, "title": pr["title"], "description": pr["body"],
                    "source_branch": pr["head"], "target_branch": pr["base"]}
        out = {"number": pr["number"], "html_url": f"{base}/pull/{pr['number']}",
               "state": "open" if pr["open"] else "closed", "title": pr["title"],
               "body": pr["body"], "head": {"ref": pr["head"], "label": pr["head"]},
               "base": {"ref": pr["base"]}}
        if kind == "github":
            out["merged_at"] = "2026-01-01T00:00:00Z" if pr["merged"] else None
        else:
            out["merged"] = pr["merged"]
        return out


def make_handler(forge):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, value):
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def bad(self, what):
            forge.violations.append(f"{self.command} {self.path}: {what}")
            self.answer(400, {"message": what})

        def handle_any(self):
            url = urllib.parse.urlsplit(self.path)
            kind, _, rest = url.path[1:].partition("/")
            query = dict(urllib.parse.parse_qsl(url.query))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = None
            if raw:
                if self.headers.get("Content-Type") != "application/json":
                    return self.bad("a body that is not sent as application/json")
                body = json.loads(raw)
            with forge.lock:
                forge.requests.append((kind, self.command, "/" + rest, query, body))
            want = {"github": ("Authorization", "Bearer " + TOKEN),
                    "gitlab": ("PRIVATE-TOKEN", TOKEN),
                    "gitea": ("Authorization", "token " + TOKEN)}.get(kind)
            if want is None:
                return self.bad("no such forge")
            if self.headers.get(want[0]) != want[1]:
                if kind == "github":
                    return self.answer(401, {"message": "Bad credentials",
                                             "documentation_url": "https://docs.github.com/rest"})
                return self.answer(401, {"message": "401 Unauthorized"})
            if kind == "github" and self.headers.get("Accept") != "application/vnd.github+json":
                return self.bad("Accept is not application/vnd.github+json")
            notes = (("projects/team%2Fapp/merge_requests/", "/notes") if kind == "gitlab"
                     else ("repos/team/app/issues/", "/comments"))
            if rest.startswith(notes[0]) and rest.endswith(notes[1]):
                if self.command != "POST":
                    return self.bad("comments are created with POST")
                with forge.lock:
                    return self.comment(kind, rest[len(notes[0]):-len(notes[1])], body)
            prefix = "projects/team%2Fapp/merge_requests" if kind == "gitlab" else "repos/team/app/pulls"
            if not (rest == prefix or rest.startswith(prefix + "/")):
                return self.bad(f"the path is not under /{prefix}")
            number = rest[len(prefix) + 1:]
            with forge.lock:
                prs = forge.prs[kind]
                if not number and self.command == "GET":
                    return self.list(kind, prs, query)
                if not number and self.command == "POST":
                    return self.create(kind, prs, body)
                update = "PUT" if kind == "gitlab" else "PATCH"
                if number and self.command == update:
                    match = [p for p in prs if str(p["number"]) == number]
                    if not match:
                        return self.answer(404, {"message": "Not Found"})
                    return self.update(kind, match[0], body)
            return self.bad("a method the pull request API has not here")

        def list(self, kind, prs, query):
            states = {"github": ("open", "closed"), "gitea": ("open", "closed"),
                      "gitlab": ("opened", "closed")}[kind]
            if query.get("state") not in states:
                return self.bad(f"state={query.get('state')} is not one of {states}")
            want_open = query["state"] == states[0]
            size = int(query.get("limit" if kind == "gitea" else "per_page", "30"))
            page = int(query.get("page", "1"))
            out = [p for p in prs if p["open"] == want_open]
            if kind == "gitlab" and query["state"] == "closed":
                out = [p for p in out if not p["merged"]]
            if kind == "github" and "head" in query:
                owner, _, branch = query["head"].partition(":")
                if owner != "team":
                    return self.bad(f"head={query['head']} is not OWNER:BRANCH")
                out = [p for p in out if p["head"] == branch]
            if kind == "gitlab" and "source_branch" in query:
                out = [p for p in out if p["head"] == query["source_branch"]]
            return self.answer(200, [forge.view(kind, p) for p in out[(page - 1) * size:page * size]])

        def create(self, kind, prs, body):
            if not isinstance(body, dict) or set(body) != CREATE_FIELDS[kind]:
                return self.bad(f"the fields are {sorted(body or {})}, not {sorted(CREATE_FIELDS[kind])}")
            head = body["source_branch" if kind == "gitlab" else "head"]
            base = body["target_branch" if kind == "gitlab" else "base"]
            text = body["description" if kind == "gitlab" else "body"]
            if any(p["head"] == head and p["open"] for p in prs):
                if kind == "github":
                    return self.answer(422, {"message": "Validation Failed", "errors": [
                        {"resource": "PullRequest", "code": "custom",
                         "message": f"A pull request already exists for team:{head}."}]})
                if kind == "gitlab":
                    return self.answer(409, {"message": [
                        "Another open merge request already exists for this source branch: !1"]})
                return self.answer(409, {"message": "pull request already exists for these targets"})
            pr = {"number": len(prs) + 1, "head": head, "base": base, "title": body["title"],
                  "body": text, "open": True, "merged": False}
            prs.append(pr)
            return self.answer(201, forge.view(kind, pr))

        def update(self, kind, pr, body):
            allowed = ({"title", "description", "state_event"} if kind == "gitlab"
                       else {"title", "body", "state"})
            if not isinstance(body, dict) or not set(body) <= allowed:
                return self.bad(f"the fields {sorted(body or {})} are not among {sorted(allowed)}")
            pr["title"] = body.get("title", pr["title"])
            pr["body"] = body.get("description" if kind == "gitlab" else "body", pr["body"])
            if body.get("state") == "closed" or body.get("state_event") == "close":
                pr["open"] = False
            return self.answer(200, forge.view(kind, pr))

        def comment(self, kind, number, body):
            if not isinstance(body, dict) or set(body) != {"body"} or not isinstance(body["body"], str):
                return self.bad(f"a comment's fields are {sorted(body or {})}, not ['body']")
            match = [p for p in forge.prs[kind] if str(p["number"]) == number]
            if not match:
                return self.answer(404, {"message": "Not Found"})
            pr = match[0]
            note = {"id": 100 + sum(len(p.get("comments", [])) for p in forge.prs[kind]),
                    "body": body["body"]}
            pr.setdefault("comments", []).append(dict(note, open=pr["open"]))
            if kind == "gitlab":
                return self.answer(201, dict(note, noteable_type="MergeRequest",
                                             noteable_iid=pr["number"], system=False))
            return self.answer(201, dict(note, html_url=f"https://{kind}.example/team/app/pull/"
                                         f"{pr['number']}#issuecomment-{note['id']}"))

        do_GET = do_POST = do_PATCH = do_PUT = handle_any

    return Handler


def start_forge(cls):
    """Sets cls.forge (a new Forge), cls.server (serving it on 127.0.0.1 until
    cls.server.shutdown()), cls.api (its URL) and cls.token_file (TOKEN, in cls.work)."""
    cls.forge = Forge()
    cls.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(cls.forge))
    threading.Thread(target=cls.server.serve_forever, daemon=True).start()
    cls.api = f"http://127.0.0.1:{cls.server.server_address[1]}"
    cls.token_file = os.path.join(cls.work, "token")
    with open(cls.token_file, "w") as f:
        f.write(TOKEN + "\n")


class PinsForgesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        start_index(cls, "pantry-pins-forges-test-")
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), cls.nginx.index_url)
        start_forge(cls)
        cls.bad_token_file = os.path.join(cls.work, "bad-token")
        with open(cls.bad_token_file, "w") as f:
            f.write("not-the-token\n")

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.pantry.stop()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    git = pins_test.PinsCheckTest.git

    def make_repo(self, name):
        m = self.manifest
        text = (pinned(m, "pantry-demo-app", "1.1") + pinned(m, "pantry-demo-lib", "1.0") +
                pinned(m, "pantry-demo-util", "0.9"))
        repo = os.path.join(self.work, "git", name)
        os.makedirs(repo)
        with open(os.path.join(repo, "requirements.txt"), "w") as f:
            f.write(text)
        self.git(repo, "init", "-q", "-b", "trunk")
        self.git(repo, "add", "requirements.txt")
        self.git(repo, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "pins")
        return repo

    def config(self, name, kind, repo, token_file=None, max_open=None):
        path = os.path.join(self.work, name + ".yaml")
        with open(path, "w") as f:
            f.write(f"data_dir: {os.path.join(self.work, 'data-' + name)}\n"
                    "pins:\n  python: [\"3.11\"]\n  platforms: [linux-x86_64]\n" +
                    (f"  max_open: {max_open}\n" if max_open else "") +
                    "  repositories:\n"
                    f"    - name: {name}\n      path: {repo}\n      files: [requirements.txt]\n"
                    f"      forge: {{kind: {kind}, api: \"{self.api}/{kind}\", "
                    f"repository: team/app, token_file: {token_file or self.token_file}}}\n")
        return path

    def bump(self, config):
        cmd = [PANTRY, "pins", "bump", "--open-prs", "--config", config,
               "--pantry", self.pantry.url("")]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        return r.returncode, r.stdout, r.stderr

    def sent(self, kind, method):
        with self.forge.lock:
            return [r for r in self.forge.requests if r[0] == kind and r[1] == method]

    def check_forge(self, kind):
        repo = self.make_repo(kind)
        config = self.config(kind, kind, repo)
        code, out, err = self.bump(config)
        self.assertEqual(code, 0, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertEqual(self.forge.violations, [])
        prs = self.forge.prs[kind]
        self.assertEqual(sorted(p["head"] for p in prs), UPGRADES, out)
        for pr in prs:
            subject = self.git(repo, "log", "-1", "--format=%s", pr["head"]).strip()
            self.assertEqual(pr["title"], subject)
            self.assertEqual(pr["base"], "trunk")
            self.assertIn("is the newest release that qualifies", pr["body"])
            self.assertIn("Pinned version yanked: no", pr["body"])
            self.assertIn("    opened " + self.forge.view(kind, pr)["web_url" if kind == "gitlab"
                                                              else "html_url"], out.splitlines())

        # Again: each branch exists and its pull request is open. The forge refuses a second one
        # (422 or 409) and the bot updates the open one instead.
        for pr in prs:
            pr["title"] = "edited by hand"
        posts = len(self.sent(kind, "POST"))
        code, out, err = self.bump(config)
        self.assertEqual(code, 0, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertEqual(self.forge.violations, [])
        self.assertEqual(len(self.sent(kind, "POST")), posts + 3)
        self.assertEqual(len(prs), 3, prs)
        for pr in prs:
            self.assertNotEqual(pr["title"], "edited by hand")
            url = self.forge.view(kind, pr)["web_url" if kind == "gitlab" else "html_url"]
            self.assertIn(f"    already open: {url} (title and description updated)", out.splitlines())

        # Closed without merging: that version is declined, recorded, and skipped from then on.
        lib = next(p for p in prs if p["head"] == "pantry/pins/pantry-demo-lib-1.1")
        lib["open"] = False
        code, out, err = self.bump(config)
        self.assertEqual(code, 0, f"stdout:\n{out}\nstderr:\n{err}")
        url = self.forge.view(kind, lib)["web_url" if kind == "gitlab" else "html_url"]
        record = os.path.join(self.work, "data-" + kind, "pins", "declined.tsv")
        self.assertIn(f"    declined: {url} was closed without merging; this version is skipped "
                      f"from now on ({record})", out.splitlines())
        with open(record) as f:
            self.assertEqual(f.read(), f"{kind}\tpantry/pins/pantry-demo-lib-1.1\t{url}\n")
        self.assertFalse(lib["open"])
        before = len(self.forge.requests)
        code, out, err = self.bump(config)
        self.assertEqual(code, 0, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn("    declined before (its pull request was closed without merging): skipped; "
                      f"see {record}", out.splitlines())
        with self.forge.lock:
            later = self.forge.requests[before:]
        self.assertFalse([r for r in later if r[4] and "pantry-demo-lib-1.1" in json.dumps(r[4])], later)
        self.assertEqual(self.forge.violations, [])

    def test_github_pull_requests_are_opened_updated_and_declined(self):
        self.check_forge("github")

    def test_gitlab_merge_requests_are_opened_updated_and_declined(self):
        self.check_forge("gitlab")

    def test_gitea_pull_requests_are_opened_updated_and_declined(self):
        self.check_forge("gitea")

    def test_a_refused_token_names_its_file_and_not_the_token(self):
        for kind in ("github", "gitlab", "gitea"):
            repo = self.make_repo("refused-" + kind)
            code, out, err = self.bump(self.config("refused-" + kind, kind, repo, self.bad_token_file))
            self.assertEqual(code, 2, f"stdout:\n{out}\nstderr:\n{err}")
            self.assertIn(f"the token in {self.bad_token_file} is refused", err)
            self.assertIn(f"GET {self.api}/{kind}/", err)
            self.assertIn("answered 401", err)
            self.assertNotIn("not-the-token", err + out)

    def test_open_prs_needs_bump_and_a_forge(self):
        repo = self.make_repo("no-forge")
        config = os.path.join(self.work, "no-forge.yaml")
        with open(config, "w") as f:
            f.write("pins:\n  python: [\"3.11\"]\n  platforms: [linux-x86_64]\n  repositories:\n"
                    f"    - {{name: no-forge, path: {repo}, files: [requirements.txt]}}\n")
        code, out, err = self.bump(config)
        self.assertEqual(code, 2, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn("pantry: pins bump: no-forge: --open-prs needs the repository's forge "
                      "(pins.repositories[].forge: kind, api, repository, token_file)", err)
        self.assertEqual(self.git(repo, "for-each-ref", "refs/heads/pantry/pins"), "")
        r = subprocess.run([PANTRY, "pins", "check", "--open-prs", "--config", config,
                            "--pantry", self.pantry.url("")], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("--open-prs is for pins bump", r.stderr)

    def test_max_open_limits_the_pull_requests_opened(self):
        kind = "gitea"
        repo = self.make_repo("limited")
        with self.forge.lock:
            self.forge.prs[kind] = []
        code, out, err = self.bump(self.config("limited", kind, repo, max_open=1))
        self.assertEqual(code, 0, f"stdout:\n{out}\nstderr:\n{err}")
        lines = out.splitlines()
        self.assertEqual(sum(1 for l in lines if l.startswith("    opened ")), 1, out)
        self.assertEqual(sum(1 for p in self.forge.prs[kind] if p["open"]), 1, self.forge.prs[kind])
        self.assertEqual(sum(1 for l in lines if l.startswith("    no pull request: ")), 2, out)
        self.assertEqual(self.forge.violations, [])


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
