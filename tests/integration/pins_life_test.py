#!/usr/bin/python3
"""The life of a pin branch: `pantry pins bump --open-prs` run again and again on one repository
per forge (GitHub, GitLab, Gitea, served by pins_forges_test.py's fake forge, which checks each
request as their REST docs describe it) while the repository and the index change under it.

The index is pins_test.py's fixture tree behind nginx and pantry (index_ttl 1 s); the test
publishes pantry-pins-life 1.0 and 1.1, later 1.2, later yanks 1.2. Each repository is a git
repository on branch trunk pinning pantry-pins-life 1.0 and pantry-demo-util 0.9 with hashes;
pins.max_open is 2. Pipelines go to the same pantry's coordinator (no runner: they stay queued).

In order, for each forge:
1. bump makes pantry/pins/pantry-pins-life-1.1 and pantry/pins/pantry-demo-util-1.0 and opens
   their pull requests, each branch with a pipeline;
2. bump again pushes nothing (every ref of the repository as before) and submits nothing;
3. a person commits to the util branch and the base branch moves: the life branch is made again
   on the new base and force-pushed (one commit, the base's tip its parent), with a new pipeline
   and its pull request updated; the util branch is not touched and the report names the person;
4. 1.2 is published: pantry-pins-life-1.2 is made, 1.1's pull request gets a comment naming the
   new one and is closed, its branch is deleted, its record says superseded, declined.tsv does
   not hear of it, and the new pull request opens although two were open (pins.max_open 2: the
   closing one makes room);
5. bump again pushes nothing and writes nothing to the forge but the pull request updates;
6. `pantry pins status` shows the superseded, rebased and left-alone branches;
7. 1.2 is yanked: 1.1 is proposed again; its pull request, closed by the bot, is no decline.

Run by ctest with the pantry binary as the first argument:
    tests/integration/pins_life_test.py build/asan/cli/pantry
"""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)
import make_pypi_upstream  # noqa: E402
from make_pypi_upstream import Release  # noqa: E402
from pantry_serve import Pantry, clean_env  # noqa: E402
import pins_forges_test  # noqa: E402
from pins_forges_test import start_forge  # noqa: E402
from pins_test import pinned, start_index  # noqa: E402

PANTRY = None
LIFE = "pantry-pins-life"
SUBMIT_TOKEN = "life-submit-token-0123456789"
KINDS = ("github", "gitlab", "gitea")
OLD = f"pantry/pins/{LIFE}-1.1"
NEW = f"pantry/pins/{LIFE}-1.2"
UTIL = "pantry/pins/pantry-demo-util-1.0"
ADA = "Ada Lovelace <ada@example.org>"


def described(r):
    return f"exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


class PinsLifeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        start_index(cls, "pantry-pins-life-test-")
        cls.releases = [Release(LIFE, "1.0"), Release(LIFE, "1.1")]
        cls.hashes = make_pypi_upstream.add_releases(cls.tree, cls.releases, cls.nginx.files_base)
        extra = f"""runner: {{ enabled: false }}
ci:
  tokens:
    - {{ name: bot, token: "{SUBMIT_TOKEN}", role: submit }}
"""
        cls.pantry = Pantry(PANTRY, os.path.join(cls.work, "pantry"), cls.nginx.index_url,
                            index_ttl="1s", extra=extra)
        start_forge(cls)

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.pantry.stop()
        cls.nginx.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    config = pins_forges_test.PinsForgesTest.config

    def git(self, repo, *args, who=("t", "t@localhost")):
        env = dict(clean_env(), GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1",
                   GIT_AUTHOR_NAME=who[0], GIT_AUTHOR_EMAIL=who[1], GIT_COMMITTER_NAME=who[0],
                   GIT_COMMITTER_EMAIL=who[1])
        r = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                           timeout=60, env=env)
        self.assertEqual(r.returncode, 0, f"git {' '.join(args)}: {r.stderr}")
        return r.stdout

    def refs(self, repo):
        return self.git(repo, "for-each-ref", "--format=%(objectname) %(refname)")

    def tip(self, repo, ref):
        return self.git(repo, "rev-parse", ref).strip()

    def make_repo(self, kind):
        life = (f"{LIFE}==1.0 \\\n    --hash=sha256:"
                f"{self.hashes['pantry_pins_life-1.0-py3-none-any.whl']}\n")
        self.texts[kind] = life + pinned(self.manifest, "pantry-demo-util", "0.9")
        repo = os.path.join(self.work, "git", kind)
        os.makedirs(repo)
        with open(os.path.join(repo, "requirements.txt"), "w") as f:
            f.write(self.texts[kind])
        with open(os.path.join(repo, ".pantry.yml"), "w") as f:
            f.write("image: busybox@sha256:" + "a" * 64 + "\njobs:\n  pins:\n    run: [\"true\"]\n")
        self.git(repo, "init", "-q", "-b", "trunk")
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "-q", "-m", "pins")
        config = self.config(kind, kind, repo, max_open=2)
        return repo, config

    def pins(self, kind, verb, *args):
        env = dict(os.environ, PANTRY_TOKEN=SUBMIT_TOKEN)
        env.pop("PANTRY_URL", None)
        cmd = [PANTRY, "pins", verb, *args, "--config", self.configs[kind],
               "--pantry", self.pantry.url("")]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env,
                              stdin=subprocess.DEVNULL)

    def bump(self, kind):
        r = self.pins(kind, "bump", "--open-prs")
        self.assertEqual(r.returncode, 0, f"{kind}: {described(r)}")
        self.assertEqual(self.forge.violations, [])
        return r.stdout

    def record(self, kind):
        with open(os.path.join(self.work, "data-" + kind, "pins", "branches.json")) as f:
            return {b["branch"]: b for b in json.load(f)["branches"]}

    def pr(self, kind, head, open_only=False):
        with self.forge.lock:
            found = [p for p in self.forge.prs[kind] if p["head"] == head
                     and (p["open"] or not open_only)]
        self.assertEqual(len(found), 1, f"{kind} {head}: {self.forge.prs[kind]}")
        return found[0]

    def url(self, kind, pr):
        return self.forge.view(kind, pr)["web_url" if kind == "gitlab" else "html_url"]

    def requests_since(self, start):
        with self.forge.lock:
            return self.forge.requests[start:]

    def publish(self, releases):
        make_pypi_upstream.add_releases(self.tree, releases, self.nginx.files_base)
        time.sleep(1.5)  # past pantry's index_ttl

    def declined(self, kind):
        path = os.path.join(self.work, "data-" + kind, "pins", "declined.tsv")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.read()

    def test_a_branch_is_kept_rebased_left_to_people_and_superseded(self):
        self.texts, self.repos, self.configs = {}, {}, {}
        for kind in KINDS:
            self.repos[kind], self.configs[kind] = self.make_repo(kind)

        # 1. The first bump: two branches, two pull requests, a pipeline each.
        for kind in KINDS:
            out = self.bump(kind)
            lines = out.splitlines()
            for branch in (OLD, UTIL):
                self.assertIn(f"    made branch {branch}", lines, out)
                self.assertIn(f"    opened {self.url(kind, self.pr(kind, branch))}", lines, out)
            self.assertEqual(out.count(" submitted: "), 2, out)
            body = self.git(self.repos[kind], "log", "-1", "--format=%B", OLD)
            self.assertTrue(body.rstrip("\n").endswith(f"\n\nPantry-Pins: {OLD}"), body)

        # 2. Nothing new: nothing pushed, nothing submitted.
        for kind in KINDS:
            repo = self.repos[kind]
            before = self.refs(repo)
            out = self.bump(kind)
            self.assertEqual(self.refs(repo), before, out)
            for branch in (OLD, UTIL):
                self.assertIn(f"    branch {branch} exists: left as it is", out.splitlines(), out)
            self.assertNotIn("submitted", out)
            self.assertNotIn("rebased", out)

        # 3. A person commits to the util branch; the base branch moves.
        for kind in KINDS:
            repo = self.repos[kind]
            self.git(repo, "checkout", "-q", UTIL)
            with open(os.path.join(repo, "NOTES"), "w") as f:
                f.write("checked by hand\n")
            self.git(repo, "add", "NOTES")
            self.git(repo, "commit", "-q", "-m", "notes", who=("Ada Lovelace", "ada@example.org"))
            self.git(repo, "checkout", "-q", "trunk")
            with open(os.path.join(repo, "README"), "w") as f:
                f.write("the base moves on\n")
            self.git(repo, "add", "README")
            self.git(repo, "commit", "-q", "-m", "readme")
            trunk = self.tip(repo, "trunk")
            util_tip = self.tip(repo, UTIL)
            old_tip = self.tip(repo, OLD)
            pr = self.pr(kind, OLD)
            start = len(self.forge.requests)
            out = self.bump(kind)
            lines = out.splitlines()
            self.assertIn(f"    rebased branch {OLD} onto {trunk[:12]}: its base branch moved "
                          f"(force-pushed over {old_tip[:12]})", lines, out)
            self.assertIn(f"    branch {UTIL} has commits by {ADA}; not rebased", lines, out)
            # The person's branch is untouched; the bot's is one commit on the new base.
            self.assertEqual(self.tip(repo, UTIL), util_tip)
            new_tip = self.tip(repo, OLD)
            self.assertNotEqual(new_tip, old_tip)
            self.assertEqual(self.git(repo, "rev-list", "--parents", "-1", OLD).split(),
                             [new_tip, trunk])
            self.assertEqual(self.git(repo, "diff", "--name-only", f"trunk..{OLD}").split(),
                             ["requirements.txt"])
            self.assertEqual(self.git(repo, "show", f"{OLD}:README"), "the base moves on\n")
            # A new pipeline for the new commit, and the pull request updated with it (Ada's
            # commit gets its own pipeline too: each new commit of a branch is tested).
            rec = self.record(kind)
            for branch in (OLD, UTIL):
                self.assertIn(f"    pipeline {rec[branch]['pipeline']} submitted: "
                              f"{rec[branch]['pipeline_url']}", lines, out)
            self.assertEqual(out.count(" submitted: "), 2, out)
            self.assertEqual(rec[UTIL]["commit"], util_tip)
            self.assertEqual((rec[OLD]["commit"], rec[OLD]["base"], rec[OLD]["rebuilds"]),
                             (new_tip, trunk, 1), rec[OLD])
            self.assertEqual(rec[UTIL]["left_alone"], f"has commits by {ADA}; not rebased")
            self.assertEqual(rec[UTIL]["rebuilds"], 0)
            update = "PUT" if kind == "gitlab" else "PATCH"
            number = str(pr["number"])
            updates = [r for r in self.requests_since(start)
                       if r[1] == update and r[2].endswith("/" + number)]
            self.assertEqual(len(updates), 1, self.requests_since(start))
            self.assertIn(f"CI: pipeline {rec[OLD]['pipeline']} queued", pr["body"])
            self.assertTrue(pr["open"])

        # 4. A newer release: 1.1's branch is superseded by 1.2's.
        self.releases.append(Release(LIFE, "1.2"))
        self.publish(self.releases)
        for kind in KINDS:
            repo = self.repos[kind]
            old_pr = self.pr(kind, OLD)
            self.assertEqual(sum(1 for p in self.forge.prs[kind] if p["open"]), 2)
            out = self.bump(kind)
            lines = out.splitlines()
            self.assertIn(f"    made branch {NEW}", lines, out)
            new_pr = self.pr(kind, NEW)
            self.assertIn(f"    opened {self.url(kind, new_pr)}", lines, out)
            self.assertIn(f"    superseded {OLD}: closed {self.url(kind, old_pr)} with a comment, "
                          "deleted its branch", lines, out)
            self.assertFalse(old_pr["open"])
            self.assertFalse(old_pr["merged"])
            # One comment, made while it was still open, naming the new branch and its pull
            # request.
            self.assertEqual(len(old_pr.get("comments", [])), 1, old_pr)
            comment = old_pr["comments"][0]
            self.assertTrue(comment["open"], comment)
            self.assertIn(NEW, comment["body"])
            self.assertIn(self.url(kind, new_pr), comment["body"])
            branches = self.git(repo, "for-each-ref", "--format=%(refname:short)",
                                "refs/heads/pantry/pins").split()
            self.assertEqual(sorted(branches), sorted([NEW, UTIL]))
            rec = self.record(kind)
            self.assertEqual(rec[OLD]["superseded_by"], NEW, rec[OLD])
            self.assertFalse(rec[OLD]["declined"])
            self.assertNotIn(OLD, self.declined(kind))
            self.assertEqual(sum(1 for p in self.forge.prs[kind] if p["open"]), 2)

        # 5. Nothing new again: no ref moves, the forge only hears the pull request updates.
        for kind in KINDS:
            repo = self.repos[kind]
            before = self.refs(repo)
            start = len(self.forge.requests)
            out = self.bump(kind)
            self.assertEqual(self.refs(repo), before, out)
            self.assertIn(f"    branch {NEW} exists: left as it is", out.splitlines(), out)
            self.assertNotIn("superseded", out)
            self.assertNotIn("submitted", out)
            writes = [r for r in self.requests_since(start) if r[1] != "GET"]
            for r in writes:
                self.assertFalse(r[2].endswith(("/notes", "/comments")), writes)
                self.assertNotIn("state", r[4] or {}, writes)
                self.assertNotIn("state_event", r[4] or {}, writes)
            self.assertNotIn(OLD, self.declined(kind))

        # 6. status shows each branch's state.
        for kind in KINDS:
            r = self.pins(kind, "status")
            self.assertEqual(r.returncode, 0, described(r))
            text = r.stdout
            old = text[text.index(f"{kind} {OLD}:"):text.index(f"{kind} {UTIL}:")]
            trunk = self.tip(self.repos[kind], "trunk")
            self.assertIn(f"    superseded by {NEW} (pull request closed, branch deleted)", old)
            self.assertIn(f"    rebased 1 time, now on base {trunk[:12]}", old)
            self.assertIn(f"    left alone: has commits by {ADA}; not rebased",
                          text[text.index(f"{kind} {UTIL}:"):], text)

        # 7. 1.2 yanked: 1.1 is proposed again; its pull request, which the bot closed, is no
        # decline (the limit of two open pull requests is reached, so none is opened now).
        self.releases[-1] = Release(LIFE, "1.2", yanked="withdrawn")
        self.publish(self.releases)
        for kind in KINDS:
            out = self.bump(kind)
            lines = out.splitlines()
            self.assertIn(f"    made branch {OLD}", lines, out)
            self.assertNotIn("declined", out)
            self.assertNotIn(OLD, self.declined(kind))
            self.assertIn("    no pull request: 2 of pantry/pins/* are open (pins.max_open 2)",
                          lines, out)
            self.assertEqual(self.record(kind)[OLD]["superseded_by"], "")


if __name__ == "__main__":
    PANTRY = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
