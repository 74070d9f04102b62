// The pin bot's run (bot.h): the configured repositories' files, decided one pin at a time with
// pantry's index over HTTP; check writes nothing, bump makes one branch per upgrade in a scratch
// clone and pushes it to the repository.

#include "pantry/orchestrator/pins/bot.h"

#include "bot_ci.h"
#include "bot_git.h"
#include "declined.h"
#include "http_index.h"
#include "run_lock.h"

#include "pantry/orchestrator/pins/branch_life.h"
#include "pantry/orchestrator/pins/branches.h"
#include "pantry/orchestrator/pins/decide.h"
#include "pantry/orchestrator/pins/forge.h"
#include "pantry/orchestrator/pins/groups.h"
#include "pantry/orchestrator/pins/image_pins.h"
#include "pantry/orchestrator/pins/image_refs.h"
#include "pantry/orchestrator/pins/requirements_file.h"
#include "pantry/orchestrator/pins/status.h"
#include "pantry/text.h"
#include "pantry/text_file.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace pantry::orchestrator::pins {
namespace {

namespace fs = std::filesystem;

bool is_pipeline_file(const fs::path& file) {
  const std::string name = ascii_lower(file.filename().string());
  return name == ".pantry.yml" || name == ".pantry.yaml";
}

// Files whose pins are images (Containerfiles, .pantry.yml) rather than requirements.
bool is_image_file(const fs::path& file) {
  const std::string name = ascii_lower(file.filename().string());
  return is_pipeline_file(file) || name.find("containerfile") == 0 ||
         name.find("dockerfile") == 0 || name.ends_with(".containerfile") ||
         name.ends_with(".dockerfile");
}

void print_plan(const bot_output& out, const std::string& where, const pin_plan& plan) {
  out.line(where + ": " + summary(plan));
  for (const auto& r : plan.reasons)
    out.line("    " + r);
  if (!plan.change || plan.result != pin_plan::outcome::upgrade) return;
  const auto hashes = [&](const pin_change& c) {
    for (const auto& h : c.hashes)
      out.line("    " + c.name + " " + c.new_version.str() + " --hash=" + h);
  };
  hashes(*plan.change);
  for (const auto& c : plan.co_upgrades)
    hashes(c);
  for (const auto& c : plan.added)
    hashes(c);
}

// The hashes of an upgrade's files that the index lists without a sha256, as pip-compile makes
// them: each such file downloaded (through the URL pantry's page gives) and hashed.
result<std::size_t> hash_unlisted_digests(http_index& index, pin_plan& plan) {
  if (plan.result != pin_plan::outcome::upgrade) return std::size_t{0};
  return hash_missing_files(
      plan, [&index](const registry::pypi::file_entry& f) { return index.file_sha256(f); });
}

// The commit message of a plan: old -> new as the subject, then why, when and what else.
std::string commit_message(const pin_plan& plan) {
  return "pins: " + summary(plan) + "\n\n" + describe(plan);
}

// The branch of `plan` (upgrade_branch()) with one commit, in the scratch clone `clone` from
// commit `base`: made, kept, rebuilt or left as put_branch() says.
result<branch_put> make_branch(const git_cli& git, const fs::path& clone, const std::string& base,
                               const std::string& file, const requirements_file& doc,
                               const pin_plan& plan) {
  auto edited = doc;
  if (auto applied = apply(edited, plan); !applied) return applied.error();
  return put_branch(git, clone, base, upgrade_branch(plan.name, plan.change->new_version),
                    {{file, edited.render()}}, commit_message(plan));
}

// The report's line of what put_branch() did with `branch`, after `prefix`.
void report_put(const bot_output& out, const std::string& prefix, const std::string& branch,
                const std::string& base, const branch_put& put) {
  switch (put.what) {
    case branch_put::done::made:
      out.line(prefix + "made branch " + branch);
      break;
    case branch_put::done::kept:
      out.line(prefix + "branch " + branch + " exists: left as it is");
      break;
    case branch_put::done::rebuilt:
      out.line(prefix + "rebased branch " + branch + " onto " + base.substr(0, 12) + ": " +
               put.why + " (force-pushed over " + put.previous.substr(0, 12) + ")");
      break;
    case branch_put::done::left:
      out.line(prefix + "branch " + branch + " " + put.why + "; not rebased");
      break;
  }
}

// What put_branch() did, in the branch's record: a branch proposed again is no longer
// superseded.
void note_put(branch_record& rec, const branch_put& put) {
  rec.superseded_by.clear();
  if (put.what == branch_put::done::rebuilt) ++rec.rebuilds;
  rec.left_alone = put.what == branch_put::done::left ? put.why + "; not rebased" : std::string();
}

// The ci.secrets entry that holds the header line ("Authorization: …") with which pantry's runners
// fetch repository NAME by URL: "pins-NAME".
std::string fetch_secret_name(const config::pins_repository& repo) {
  return "pins-" + repo.name;
}

// How pantry's runners get `repo`'s commits: nullopt when they cannot fetch it (a local path, or a
// URL with a token but no fetch_secret_name() in cfg.ci.secrets; its trees are uploaded), else the
// secret to fetch it with ("" for a URL without a token).
std::optional<std::string> runner_fetch(const config::config& cfg,
                                        const config::pins_repository& repo) {
  if (repo.url.empty()) return std::nullopt;
  if (repo.token_file.empty()) return std::string();
  const std::string name = fetch_secret_name(repo);
  if (cfg.ci.secrets.contains(name)) return name;
  return std::nullopt;
}

// What make_group_branch() did.
struct group_outcome {
  std::string name;       // the branch, made now or before; "" when there is none to follow up
  std::string change;     // group_summary()
  std::string message;    // the commit message
  bool left_out = false;  // an upgrade could not join the group (reported)
  branch_put put;         // what put_branch() did with it
};

// The branch of group `group`'s `upgrades` of repository `repo` (group_branch()), its files
// edited by every upgrade that fits (apply_group(); the others are reported) in the scratch clone
// `clone` from `base`: made, kept, rebuilt or left as put_branch() says, unless it was declined.
result<group_outcome> make_group_branch(const git_cli& git, const fs::path& clone,
                                        const std::string& base, const std::string& group,
                                        const std::vector<grouped_upgrade>& upgrades,
                                        const declined_record& declined, const std::string& repo,
                                        const bot_output& out) {
  const std::string where = repo + ": group " + group;
  group_outcome made;
  auto edit = apply_group(upgrades);
  for (const auto& [i, why] : edit.left_out) {
    made.left_out = true;
    out.problem(where + ": " + summary(upgrades[i].plan) + " is left out of the group: " + why);
  }
  if (edit.applied.empty()) return made;
  std::vector<const pin_plan*> plans;
  std::vector<std::pair<std::string, const pin_plan*>> listed;
  for (const std::size_t i : edit.applied) {
    plans.push_back(&upgrades[i].plan);
    listed.emplace_back(upgrades[i].file, &upgrades[i].plan);
  }
  const std::string name = group_branch(group, plans);
  if (declined.has(repo, name)) {
    out.line(where + ": declined before (its pull request was closed without merging): " +
             "skipped; see " + declined.file().string());
    return made;
  }
  made.change = group_summary(group, plans);
  made.message = group_commit_message(group, listed);
  std::map<std::string, std::string> files;
  for (const auto& [file, doc] : edit.files)
    files.emplace(file, doc.render());
  auto put = put_branch(git, clone, base, name, files, made.message);
  if (!put) return put.error();
  made.put = std::move(*put);
  if (made.put.what == branch_put::done::made) {
    out.line(where + ": made branch " + name + " (" + std::to_string(plans.size()) + " upgrades)");
  } else {
    report_put(out, where + ": ", name, base, made.put);
  }
  made.name = name;
  return made;
}

// A moved image tag of one repository: its plan and every place that pins it.
struct moved_image {
  image_plan plan;
  std::map<std::string, std::vector<image_site>> sites;  // file -> references in it
};

// The commit message of an image bump: old -> new as the subject, then where.
std::string image_commit_message(const moved_image& moved) {
  std::string m = summary(moved.plan) + "\n\nThe tag " + moved.plan.name + ":" + moved.plan.tag +
                  " points at " + moved.plan.new_digest + " in pantry's registry now.\n";
  for (const auto& [file, sites] : moved.sites) {
    for (const auto& site : sites)
      m += file + ":" + std::to_string(site.line) + ": " + site.context + "\n";
  }
  return m;
}

// The branch of `moved` (image_branch()), each of its references' digest replaced in the files of
// the scratch clone `clone` at `base`: made, kept, rebuilt or left as put_branch() says (a tag
// that moved again rebuilds its branch with the new digest).
result<branch_put> make_image_branch(const git_cli& git, const fs::path& clone,
                                     const std::string& base, const moved_image& moved) {
  const std::string branch = image_branch(moved.plan);
  std::map<std::string, std::string> files;
  for (const auto& [file, sites] : moved.sites) {
    // The file as it is at `base`, not as an earlier branch's checkout left the working tree.
    auto text = run_git(git, {"-C", clone.string(), "show", base + ":" + file});
    if (!text) return text.error();
    std::string edited = std::move(*text);
    // Back to front, so that each range is read before anything ahead of it changes.
    for (auto it = sites.rbegin(); it != sites.rend(); ++it) {
      auto replaced = replace_digest(edited, *it, moved.plan.new_digest);
      if (!replaced) return error(replaced.error().code, file + ": " + replaced.error().message);
      edited = std::move(*replaced);
    }
    files.emplace(file, std::move(edited));
  }
  return put_branch(git, clone, base, branch, files, image_commit_message(moved));
}

// One repository's pull requests during a bump: how many of pantry/pins/* are open, and the
// pull request of each branch.
struct pr_opener {
  const config::pins_repository& repo;
  forge_client& forge;
  declined_record& declined;
  const bot_output& out;
  std::string base;   // the branch the pull requests merge into
  unsigned max_open;  // 0: no limit
  std::size_t open_now;
  std::set<std::string> open_heads;  // the branches of the open ones

  // What handle() did.
  struct handled {
    bool declined = false;  // closed without merging: the version is declined from now on
    std::string url;        // the pull request's, "" when none was opened (pins.max_open)
  };

  // Opens or updates the pull request of `branch` and reports what happened. The open pull
  // requests of `closing` (branches it supersedes) do not count against max_open. A branch
  // `superseded` before (its pull request closed by bump) is not declined by that close.
  result<handled> handle(const std::string& branch, const std::string& message,
                         const std::vector<std::string>& closing, bool superseded) {
    auto closed = forge.closed_unmerged(branch);
    if (!closed) return closed.error();
    if (*closed && !superseded) {
      auto listed = forge.list(pr_state::closed, branch);
      if (!listed) return listed.error();
      std::string url;
      for (const auto& pr : *listed) {
        if (!pr.merged) {
          url = pr.url;
          break;
        }
      }
      if (auto r = declined.add(repo.name, branch, url); !r) return r.error();
      out.line("    declined: " + url + " was closed without merging; this version is " +
               "skipped from now on (" + declined.file().string() + ")");
      return handled{true, url};
    }
    const std::size_t nl = message.find('\n');
    const std::string title = message.substr(0, nl);
    const std::string body =
        nl == std::string::npos ? std::string() : std::string(trim_ascii_space(message.substr(nl)));
    // At the limit only an open one is updated. Below it the forge is asked to open one, and its
    // "already exists" (GitHub's 422) turns into an update of that one.
    std::size_t freed = 0;
    for (const auto& b : closing)
      freed += open_heads.count(b);
    if (max_open != 0 && open_now - std::min(freed, open_now) >= max_open) {
      auto existing = forge.find_open(branch);
      if (!existing) return existing.error();
      if (!*existing) {
        out.line("    no pull request: " + std::to_string(open_now) +
                 " of pantry/pins/* are open " + "(pins.max_open " + std::to_string(max_open) +
                 ")");
        return handled{};
      }
    }
    auto made = forge.open_or_update(branch, base, title, body);
    if (!made) return made.error();
    if (made->created) {
      ++open_now;
      open_heads.insert(branch);
      out.line("    opened " + made->pr.url);
    } else {
      out.line("    already open: " + made->pr.url + " (title and description updated)");
    }
    return handled{false, made->pr.url};
  }

  // The pull request of `branch` was closed.
  void closed(const std::string& branch) {
    if (open_heads.erase(branch) != 0 && open_now > 0) --open_now;
  }
};

// The older branches a new upgrade supersedes (branch_life.h's older_upgrades()): found before
// the new branch's pull request is opened (theirs make room under pins.max_open), retired after
// it (the comment names the new one). One repository's, during a bump.
struct superseder {
  const config::pins_repository& repo;
  const git_cli& git;
  const fs::path& clone;
  const std::string& base;
  branch_records& records;
  const bot_output& out;
  // origin's pantry/pins/* branches and commits, read once.
  std::optional<std::vector<std::pair<std::string, std::string>>> heads;
  std::set<std::string> proposed;  // the branches this run proposed: never superseded by it

  // A branch to supersede and the commit it was read at.
  struct doomed {
    std::string branch, tip;
  };

  // The bot's branches of project `name` older than `version`, `branch` being the new one's; a
  // branch with someone else's commits is reported and left.
  result<std::vector<doomed>> find(const std::string& name, const registry::pypi::version& version,
                                   const std::string& branch) {
    auto names = head_names(branch);
    if (!names) return names.error();
    return bots_own(older_upgrades(*names, name, version));
  }

  // The bot's other branches of group `group` (branch_life.h's other_group_branches()), `branch`
  // being the one proposed now; as find() does.
  result<std::vector<doomed>> find_group(const std::string& group, const std::string& branch) {
    auto names = head_names(branch);
    if (!names) return names.error();
    return bots_own(other_group_branches(*names, group, branch));
  }

  // origin's pantry/pins/* branch names (read once), `branch` noted as proposed by this run.
  result<std::vector<std::string>> head_names(const std::string& branch) {
    proposed.insert(branch);
    if (!heads) {
      auto listed = remote_heads(git, clone, "pantry/pins/");
      if (!listed) return listed.error();
      heads = std::move(*listed);
    }
    std::vector<std::string> names;
    for (const auto& h : *heads)
      names.push_back(h.first);
    return names;
  }

  // Those of `candidates` that are the bot's alone and not proposed by this run, at their tips.
  result<std::vector<doomed>> bots_own(const std::vector<std::string>& candidates) {
    std::vector<doomed> out_list;
    for (const auto& old : candidates) {
      if (proposed.contains(old)) continue;
      auto tip = fetch_branch(git, clone, old);
      if (!tip) return tip.error();
      if (tip->empty()) continue;  // deleted meanwhile
      auto read = read_branch(git, clone, base, *tip);
      if (!read) return read.error();
      const auto verdict = judge_existing(*read, base, "");
      if (verdict.what == branch_verdict::fate::leave) {
        out.line("    branch " + old + " " + verdict.why + "; not superseded (left as it is)");
        continue;
      }
      out_list.push_back({old, *tip});
    }
    return out_list;
  }

  // Supersedes each of `list` by `branch` (whose pull request is `url`, "" none): its open pull
  // request gets a comment naming the new one and is closed, the branch is deleted from origin,
  // and its record says superseded. Not a decline: declined.tsv does not hear of it.
  void retire(const std::vector<doomed>& list, const std::string& branch, const std::string& url,
              forge_client* forge, pr_opener* opener, bool& errors) {
    for (const auto& d : list) {
      const auto failed = [&](const error& e) {
        errors = true;
        out.problem(repo.name + ": superseding " + d.branch + ": " + e.message);
      };
      std::string pr;
      if (forge) {
        auto open = forge->find_open(d.branch);
        if (!open) {
          failed(open.error());
          continue;
        }
        if (*open) {
          const std::string comment =
              "Superseded by " + branch + (url.empty() ? "" : " (" + url + ")") +
              ": pantry pins bump proposes newer versions there, so it closes this pull "
              "request and deletes its branch.";
          if (auto c = forge->comment((*open)->number, comment); !c) {
            failed(c.error());
            continue;
          }
          auto closed = forge->close((*open)->number);
          if (!closed) {
            failed(closed.error());
            continue;
          }
          pr = closed->url;
          if (opener) opener->closed(d.branch);
        }
      }
      if (auto r = delete_branch(git, clone, d.branch, d.tip); !r) {
        failed(r.error());
        continue;
      }
      std::erase_if(*heads, [&](const auto& h) { return h.first == d.branch; });
      branch_record* rec = records.find(repo.name, d.branch);
      if (!rec) {
        branch_record fresh;
        fresh.repository = repo.name;
        fresh.branch = d.branch;
        fresh.commit = d.tip;
        // A branch made before bump kept records: its commit's subject says what it was.
        if (auto subject = run_git(git, {"-C", clone.string(), "log", "-1", "--format=%s", d.tip}))
          fresh.change = trim_ascii_space(*subject);
        rec = &records.put(std::move(fresh));
      }
      rec->superseded_by = branch;
      if (!pr.empty()) rec->pr_url = pr;
      out.line("    superseded " + d.branch + ": " +
               (pr.empty() ? std::string() : "closed " + pr + " with a comment, ") +
               "deleted its branch");
    }
  }
};

// The branches of `list`.
std::vector<std::string> branches_of(const std::vector<superseder::doomed>& list) {
  std::vector<std::string> out;
  for (const auto& d : list)
    out.push_back(d.branch);
  return out;
}

// The line of a pull request's description that gives its CI result.
std::string ci_line(const branch_record& r) {
  if (r.pipeline == 0) return r.note.empty() ? std::string("no CI run") : r.note;
  return "CI: pipeline " + std::to_string(r.pipeline) + " " + r.status + " (" + r.pipeline_url +
         ")";
}

// A commit message with the CI result of its branch at the end of the description.
std::string with_ci(const std::string& message, const branch_record& r) {
  std::string m = message;
  while (!m.empty() && m.back() == '\n')
    m.pop_back();
  return m + "\n\n" + ci_line(r) + "\n";
}

// Where a bump keeps its branches' CI: the coordinator (when it may submit) and the record.
struct ci_tracker {
  const bot_output& out;
  git_cli git;  // the repository's at hand
  // The repository's at hand when pantry's runners fetch it themselves (runner_fetch()): the
  // ci.secrets entry they send, "" for none. nullopt: its trees are uploaded.
  std::optional<std::string> fetch_secret;
  branch_records& records;
  bot_ci* ci;  // null: no pipelines (no_ci says why)
  const std::string& no_ci;
  std::size_t archives = 0;  // to name each archive of a run apart

  // The record of `repo`'s branch `name` (made now or found), its pipeline submitted for the
  // branch's commit unless one was before. `clone` is the scratch clone, `scratch` its parent.
  result<branch_record*> track(const config::pins_repository& repo, const std::string& name,
                               const std::string& change, const std::string& message,
                               const fs::path& clone, const fs::path& scratch,
                               const std::string& base) {
    auto remote = run_git(
        git, {"-C", clone.string(), "ls-remote", "--heads", "origin", "refs/heads/" + name});
    if (!remote) return remote.error();
    if (remote->size() < 40)
      return error(errc::not_found, "branch " + name + " is not in " +
                                        (repo.url.empty() ? repo.path : repo.url) + " after all");
    const std::string commit = remote->substr(0, 40);
    branch_record* rec = records.find(repo.name, name);
    if (rec && rec->commit == commit && rec->pipeline != 0) return rec;
    branch_record fresh;
    fresh.repository = repo.name;
    fresh.branch = name;
    if (rec) fresh = *rec;
    fresh.change = change;
    fresh.commit = commit;
    if (!rec || rec->commit != commit) fresh.base = base;
    const std::size_t nl = message.find('\n');
    fresh.title = message.substr(0, nl);
    fresh.body = nl == std::string::npos
                     ? std::string()
                     : std::string(trim_ascii_space(std::string_view(message).substr(nl)));
    fresh.pipeline = 0;
    fresh.pipeline_url.clear();
    fresh.status = "none";
    rec = &records.put(std::move(fresh));
    if (!ci) {
      rec->note = "no CI run: " + no_ci;
      out.line("    " + rec->note);
      return rec;
    }
    auto spec = run_git(git, {"-C", clone.string(), "show", commit + ":.pantry.yml"});
    if (!spec) {
      rec->note = "no CI run: the branch has no .pantry.yml";
      out.line("    " + rec->note);
      return rec;
    }
    auto submitted = submit(repo, *rec, clone, scratch, base, *spec);
    if (!submitted && submitted.error().is(errc::not_found)) {
      // A pantry without a coordinator (ci.enabled: false) has no such routes: no CI, no error.
      rec->note = "no CI run: " + submitted.error().message + " (does it run a coordinator?)";
      out.line("    " + rec->note);
      return rec;
    }
    if (!submitted) {
      rec->note = "no CI run: " + submitted.error().message;
      return error(submitted.error().code, "CI for " + name + ": " + submitted.error().message);
    }
    rec->pipeline = submitted->id;
    rec->pipeline_url = submitted->url;
    rec->status = "queued";
    rec->note.clear();
    out.line("    pipeline " + std::to_string(rec->pipeline) + " submitted: " + rec->pipeline_url);
    return rec;
  }

  // The pipeline of the branch `rec` records. A repository by URL that pantry's runners can fetch
  // (fetch_secret) gets a git source with the branch's base commit, so that the files it changed
  // run their tests first; otherwise the commit's tree is
  // packed from the scratch clone `clone` (checked out at `base` again after) and uploaded, as
  // `pantry submit` does.
  result<coordinator::submitted> submit(const config::pins_repository& repo,
                                        const branch_record& rec, const fs::path& clone,
                                        const fs::path& scratch, const std::string& base,
                                        const std::string& spec) {
    if (fetch_secret)
      return ci->submit_git(repo.name, rec.branch, rec.commit, repo.url, rec.base, *fetch_secret,
                            spec);
    const std::string dir = clone.string();
    if (auto r = run_git(git, {"-C", dir, "checkout", "--quiet", "--detach", rec.commit}); !r)
      return r.error();
    const fs::path archive = scratch / ("tree-" + std::to_string(++archives) + ".tar.zst");
    auto submitted = ci->submit(repo.name, rec.branch, rec.commit, clone, archive, spec);
    // Back to the base: the files read next are read from the work tree.
    if (auto r = run_git(git, {"-C", dir, "checkout", "--quiet", "--detach", base}); !r)
      return r.error();
    return submitted;
  }

  // Asks the coordinator about `repo`'s pipelines that had not ended, and records what changed;
  // with `forge`, the open pull request of a branch whose pipeline ended gets the result.
  void refresh(const config::pins_repository& repo, forge_client* forge, bool& errors) {
    if (!ci) return;
    for (const auto& listed : records.all()) {
      if (listed.repository != repo.name || listed.pipeline == 0 || pipeline_ended(listed.status))
        continue;
      branch_record& rec = *records.find(listed.repository, listed.branch);
      auto now = ci->status(rec.pipeline);
      if (!now && now.error().is(errc::not_found)) {
        rec.status = "cancelled";
        rec.note = "the coordinator no longer holds pipeline " + std::to_string(rec.pipeline);
        out.line(repo.name + ": " + rec.branch + ": " + rec.note);
        continue;
      }
      if (!now) {
        errors = true;
        out.problem(repo.name + ": " + rec.branch + ": " + now.error().message);
        continue;
      }
      if (*now == rec.status) continue;
      rec.status = *now;
      out.line(repo.name + ": " + rec.branch + ": pipeline " + std::to_string(rec.pipeline) + " " +
               rec.status);
      if (!forge || !pipeline_ended(rec.status) || rec.declined || !rec.superseded_by.empty())
        continue;
      auto open = forge->find_open(rec.branch);
      if (!open) {
        errors = true;
        out.problem(repo.name + ": " + rec.branch + ": " + open.error().message);
        continue;
      }
      if (!*open) continue;
      const std::string body = (rec.body.empty() ? "" : rec.body + "\n\n") + ci_line(rec);
      auto updated = forge->update((*open)->number, rec.title, body);
      if (!updated) {
        errors = true;
        out.problem(repo.name + ": " + rec.branch + ": " + updated.error().message);
        continue;
      }
      rec.pr_url = updated->url;
      out.line("    pull request " + updated->url + " updated with the CI result");
    }
  }
};

}  // namespace

namespace {

bot_outcome run_once(const config::config& cfg, const bot_options& opt, const bot_output& out) {
  bot_outcome outcome;
  // The branches' record, once a bump has read it; written back however the run ends.
  std::optional<branch_records>* kept = nullptr;
  const auto save = [&] {
    if (!kept || !*kept) return;
    if (auto r = (*kept)->save(); !r) {
      out.problem(r.error().message);
      outcome.status = kExitError;
    }
  };
  const auto fail = [&](const std::string& message) {
    out.problem(message);
    outcome.status = kExitError;
    save();
    return outcome;
  };
  const bool bump = opt.bump;
  if (cfg.pins.repositories.empty())
    return fail("pins.repositories is empty in " + opt.config_name + ": nothing to check");
  std::vector<const config::pins_repository*> repos;
  for (const auto& r : cfg.pins.repositories) {
    if (!opt.repo || r.name == *opt.repo) repos.push_back(&r);
  }
  if (repos.empty()) {
    std::string names;
    for (const auto& r : cfg.pins.repositories)
      names += (names.empty() ? "" : ", ") + r.name;
    return fail("--repo " + quote_for_message(*opt.repo) + " is not a repository of pins in " +
                opt.config_name + " (it has " + names + ")");
  }
  auto policy = upgrade_policy::from_config(cfg.pins, std::chrono::system_clock::now());
  if (!policy) return fail(policy.error().message);
  auto where =
      opt.locate_pantry
          ? opt.locate_pantry()
          : result<pantry_endpoint>(error(errc::invalid_argument, "no pantry to ask (a bug)"));
  if (!where) return fail(where.error().message);
  const std::string& url = where->url;
  if (opt.open_prs && !bump) return fail("--open-prs is for pins bump (check changes nothing)");
  std::unique_ptr<run_lock> lock;
  std::optional<declined_record> declined;
  std::optional<branch_records> records;
  std::unique_ptr<bot_ci> ci;
  if (bump) {
    auto locked = run_lock::acquire(cfg.data_dir);
    if (!locked) return fail(locked.error().message);
    lock = std::move(*locked);
    auto read = branch_records::load(cfg.data_dir);
    if (!read) return fail(read.error().message);
    records.emplace(std::move(*read));
    kept = &records;
    if (where->token) ci = std::make_unique<bot_ci>(url, *where->token);
    auto loaded = declined_record::load(fs::path(cfg.data_dir) / "pins" / "declined.tsv");
    if (!loaded) return fail(loaded.error().message);
    declined.emplace(std::move(*loaded));
  }
  // git makes bump's branches, and the clone that a repository given by URL is read from.
  std::string git_path;
  const bool any_url =
      std::any_of(repos.begin(), repos.end(), [](const auto* r) { return !r->url.empty(); });
  if (bump || any_url) {
    auto found = git_program();
    if (!found) return fail(found.error().message);
    git_path = *found;
  }
  http_index index(url);
  const auto source = index.source();
  std::optional<ci_tracker> tracker;
  if (bump)
    tracker.emplace(ci_tracker{out, git_cli{}, std::nullopt, *records, ci.get(), opt.no_ci_reason});

  bool errors = false;
  bool outdated = false;
  std::size_t& checked = outcome.checked;
  const auto stopped = [&] { return opt.stop_requested && opt.stop_requested(); };
  const std::string kStopped = "stopped before its end: pantry is shutting down";
  for (const auto* repo : repos) {
    if (stopped()) return fail(kStopped);
    // bump reads and edits the files of a scratch clone, never the user's working tree; a
    // repository by URL is read from one by check too.
    const bool cloned_first = bump || !repo->url.empty();
    git_cli git;
    if (cloned_first) {
      auto access = git_for(git_path, *repo);
      if (!access) {
        errors = true;
        out.problem(repo->name + ": " + access.error().message);
        continue;
      }
      git = std::move(*access);
    }
    if (tracker) {
      tracker->git = git;
      tracker->fetch_secret = runner_fetch(cfg, *repo);
    }
    std::unique_ptr<scratch_dir> scratch;
    fs::path root = repo->path;
    std::string base;
    if (cloned_first) {
      auto made = scratch_dir::make();
      if (!made) return fail(made.error().message);
      scratch = std::move(*made);
      root = scratch->path() / "clone";
      std::vector<std::string> args = {"clone", "--quiet", "--no-hardlinks"};
      if (!repo->branch.empty()) args.insert(args.end(), {"--branch", repo->branch});
      args.insert(args.end(), {"--", repo->url.empty() ? repo->path : repo->url, root.string()});
      auto cloned = run_git(git, args);
      if (!cloned) {
        errors = true;
        out.problem(repo->name + ": " + cloned.error().message);
        continue;
      }
      auto head = run_git(git, {"-C", root.string(), "rev-parse", "HEAD"});
      if (!head) return fail(head.error().message);
      base = std::string(trim_ascii_space(*head));
    }
    std::unique_ptr<forge_client> forge;
    std::optional<pr_opener> opener;
    if (opt.open_prs &&
        !(opt.forge_optional && repo->forge.kind == config::pins_forge_kind::none)) {
      if (repo->forge.kind == config::pins_forge_kind::none) {
        errors = true;
        out.problem(repo->name +
                    ": --open-prs needs the repository's forge (pins.repositories[].forge: kind, "
                    "api, repository, token_file)");
        continue;
      }
      auto made = forge_client::create(repo->forge);
      std::optional<error> failed;
      if (made) {
        forge = std::move(*made);
      } else {
        failed = made.error();
      }
      std::string into = repo->branch;
      if (!failed && into.empty()) {
        auto current = run_git(git, {"-C", root.string(), "rev-parse", "--abbrev-ref", "HEAD"});
        if (current) {
          into = std::string(trim_ascii_space(*current));
        } else {
          failed = current.error();
        }
      }
      if (!failed) {
        auto open = forge->list(pr_state::open, "pantry/pins/");
        if (open) {
          opener.emplace(
              pr_opener{*repo, *forge, *declined, out, into, cfg.pins.max_open, open->size(), {}});
          for (const auto& pr : *open)
            opener->open_heads.insert(pr.head);
        } else {
          failed = open.error();
        }
      }
      if (failed) {
        errors = true;
        out.problem(repo->name + ": " + failed->message);
        continue;
      }
    }
    if (tracker) tracker->refresh(*repo, forge.get(), errors);
    // After a branch was made or found (`put`): its pipeline, then its pull request with the CI
    // result (the open ones of `closing`, which it supersedes, make room under max_open). Returns
    // the pull request's URL ("" none).
    const auto follow_up = [&](const std::string& where, const std::string& name,
                               const std::string& change, const std::string& message,
                               const branch_put& put, const std::vector<std::string>& closing) {
      const branch_record* before = records->find(repo->name, name);
      const bool superseded = before && !before->superseded_by.empty();
      auto rec = tracker->track(*repo, name, change, message, root, scratch->path(), base);
      if (!rec) {
        errors = true;
        out.problem(where + ": " + rec.error().message);
      } else {
        note_put(**rec, put);
      }
      if (!opener) return std::string();
      const std::string text = rec ? with_ci(message, **rec) : message;
      auto handled = opener->handle(name, text, closing, superseded);
      if (!handled) {
        errors = true;
        out.problem(where + ": " + handled.error().message);
        return std::string();
      }
      if (rec) {
        (*rec)->pr_url = handled->url;
        (*rec)->declined = handled->declined;
      }
      return handled->url;
    };
    std::optional<superseder> retiring;
    if (bump) retiring.emplace(superseder{*repo, git, root, base, *records, out, {}, {}});
    // The moved image tags of this repository, by NAME:TAG: one branch each, made once every
    // file was read (a tag may be pinned in more than one place).
    std::map<std::string, moved_image> moved_images;
    // The upgrades of each group (pins.groups), by group name: one branch each, made last.
    std::map<std::string, std::vector<grouped_upgrade>> grouped;
    for (const auto& file : repo->files) {
      const std::string shown = repo->name + "/" + file;
      auto text = read_text_file(root / file);
      if (!text) {
        errors = true;
        out.problem(repo->name + ": " + text.error().message);
        continue;
      }
      if (is_image_file(file)) {
        result<image_sites> found = image_sites{};
        if (is_pipeline_file(file)) {
          found = find_pipeline_images(*text, shown);
        } else {
          found = find_containerfile_images(*text);
        }
        if (!found) {
          errors = true;
          out.problem(found.error().message);
          out.problem(shown + " is left as it is");
          continue;
        }
        for (const auto& skipped : found->skipped) {
          if (opt.only) continue;
          out.line(shown + ":" + std::to_string(skipped.line) + ": image " + skipped.written +
                   ": not checked: " + skipped.reason);
        }
        for (const auto& site : found->images) {
          if (stopped()) return fail(kStopped);
          const auto& ref = site.reference;
          if (opt.only && ref.name != *opt.only) continue;
          const std::string where = shown + ":" + std::to_string(site.line);
          if (auto unchecked = unchecked_image(ref)) {
            out.line(where + ": " + summary(*unchecked));
            continue;
          }
          auto digest = index.tag_digest(ref);
          if (!digest) {
            // A registry that refuses or cannot be reached decides nothing: stop, change nothing.
            return fail(where + ": " + digest.error().message);
          }
          ++checked;
          auto plan = decide_image(ref, *digest);
          out.line(where + ": " + summary(plan));
          if (plan.result != image_plan::outcome::moved) continue;
          outdated = true;
          auto& moved = moved_images[ref.name + ":" + ref.tag];
          moved.plan = std::move(plan);
          moved.sites[file].push_back(site);
        }
        continue;
      }
      auto doc = requirements_file::parse(std::move(*text), shown);
      if (!doc) {
        errors = true;
        out.problem(doc.error().message);
        out.problem(shown + " is left as it is");
        continue;
      }
      const auto& reqs = doc->requirements();
      for (std::size_t i = 0; i < reqs.size(); ++i) {
        if (stopped()) return fail(kStopped);
        if (opt.only && reqs[i].name != *opt.only) continue;
        if (!reqs[i].pinned_version())
          continue;  // a range or URL: pip resolves it, nothing to move
        auto plan = decide(*doc, i, *policy, source);
        if (!plan) {
          // An unreachable index decides nothing at all: stop instead of failing each pin alike.
          const std::string message = shown + ":" + std::to_string(reqs[i].line) + ": " +
                                      reqs[i].name + ": " + plan.error().message;
          if (!plan.error().is(errc::not_found)) return fail(message);
          out.problem(message);
          errors = true;
          continue;
        }
        ++checked;
        const std::string where = shown + ":" + std::to_string(reqs[i].line);
        auto hashed = hash_unlisted_digests(index, *plan);
        print_plan(out, where, *plan);
        if (plan->result == pin_plan::outcome::upgrade ||
            plan->result == pin_plan::outcome::skipped)
          outdated = true;
        if (!hashed) {
          errors = true;
          out.problem(where + ": " + hashed.error().message + "; not applied");
          continue;
        }
        if (!bump || plan->result != pin_plan::outcome::upgrade) continue;
        if (const auto* group = group_of(cfg.pins.groups, plan->name)) {
          out.line("    in group " + group->name + ": its branch comes after the files are read");
          grouped[group->name].push_back(grouped_upgrade{file, *doc, std::move(*plan)});
          continue;
        }
        const std::string name = upgrade_branch(plan->name, plan->change->new_version);
        if (declined->has(repo->name, name)) {
          out.line(
              "    declined before (its pull request was closed without merging): skipped; "
              "see " +
              declined->file().string());
          continue;
        }
        if (retiring->proposed.contains(name)) {
          // Made again for this file it would lose the earlier file's edit, and the next run
          // would make it back: one file's pin per branch until they share one commit.
          out.line("    branch " + name + " is this run's for an earlier file already: this " +
                   "file's pin is not in it");
          continue;
        }
        auto branch = make_branch(git, root, base, file, *doc, *plan);
        if (!branch) {
          errors = true;
          out.problem(where + ": " + branch.error().message);
          continue;
        }
        report_put(out, "    ", name, base, *branch);
        auto doomed = retiring->find(plan->name, plan->change->new_version, name);
        if (!doomed) {
          errors = true;
          out.problem(where + ": " + doomed.error().message);
          doomed = std::vector<superseder::doomed>();
        }
        const std::string url = follow_up(where, name, summary(*plan), commit_message(*plan),
                                          *branch, branches_of(*doomed));
        retiring->retire(*doomed, name, url, forge.get(), opener ? &*opener : nullptr, errors);
      }
    }
    if (!bump) continue;
    for (const auto& [key, moved] : moved_images) {
      if (stopped()) return fail(kStopped);
      const std::string where = repo->name + ": image " + key;
      const std::string name = image_branch(moved.plan);
      if (declined->has(repo->name, name)) {
        out.line(where + ": declined before (its pull request was closed without merging): " +
                 "skipped; see " + declined->file().string());
        continue;
      }
      auto branch = make_image_branch(git, root, base, moved);
      if (!branch) {
        errors = true;
        out.problem(where + ": " + branch.error().message);
        continue;
      }
      report_put(out, where + ": ", name, base, *branch);
      follow_up(where, name, summary(moved.plan), image_commit_message(moved), *branch, {});
    }
    for (const auto& [group, upgrades] : grouped) {
      if (stopped()) return fail(kStopped);
      const std::string where = repo->name + ": group " + group;
      auto branch = make_group_branch(git, root, base, group, upgrades, *declined, repo->name, out);
      if (!branch) {
        errors = true;
        out.problem(where + ": " + branch.error().message);
        continue;
      }
      errors = errors || branch->left_out;
      if (branch->name.empty()) continue;
      // The group's branch of an older set of versions is superseded by this one.
      auto doomed = retiring->find_group(group, branch->name);
      if (!doomed) {
        errors = true;
        out.problem(where + ": " + doomed.error().message);
        doomed = std::vector<superseder::doomed>();
      }
      const std::string url = follow_up(where, branch->name, branch->change, branch->message,
                                        branch->put, branches_of(*doomed));
      retiring->retire(*doomed, branch->name, url, forge.get(), opener ? &*opener : nullptr,
                       errors);
    }
  }
  if (opt.only && checked == 0 && !errors)
    return fail("--only " + *opt.only + ": no file of the checked repositories pins it");
  save();
  if (errors) {
    outcome.status = kExitError;
  } else if (!bump && outdated) {
    outcome.status = kExitOutdated;
  }
  return outcome;
}

}  // namespace

bot_outcome run_bot(const config::config& cfg, const bot_options& opt, const bot_output& out) {
  if (!opt.bump) return run_once(cfg, opt, out);
  last_run run;
  run.started = rfc3339_utc(std::chrono::system_clock::now());
  const bot_output counted{out.line, [&](std::string_view message) {
                             if (run.first_problems.size() < kLastRunProblems)
                               run.first_problems.emplace_back(message);
                             ++run.problems;
                             out.problem(message);
                           }};
  bot_outcome outcome = run_once(cfg, opt, counted);
  run.ended = rfc3339_utc(std::chrono::system_clock::now());
  run.status = outcome.status;
  run.checked = outcome.checked;
  if (auto saved = save_last_run(cfg.data_dir, run); !saved) {
    out.problem(saved.error().message);
    outcome.status = kExitError;
  }
  return outcome;
}

result<pins_report> current_status(const config::config& cfg,
                                   const std::optional<std::string>& repo,
                                   const std::optional<pantry_endpoint>& where,
                                   const bot_output& out) {
  auto report = read_pins_report(cfg, repo);
  if (!report) return report.error();
  std::unique_ptr<bot_ci> ci;
  if (where && where->token) ci = std::make_unique<bot_ci>(where->url, *where->token);
  for (auto& r : report->branches) {
    if (!ci || r.pipeline == 0 || pipeline_ended(r.status)) continue;
    auto now = ci->status(r.pipeline);
    if (now) {
      r.status = *now;
    } else {
      out.problem(r.repository + ": " + r.branch + ": " + now.error().message);
    }
  }
  return report;
}

}  // namespace pantry::orchestrator::pins
