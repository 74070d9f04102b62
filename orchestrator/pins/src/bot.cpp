// The pin bot's run (bot.h): the configured repositories' files, decided one pin at a time with
// pantry's index over HTTP; check writes nothing, bump makes one branch per upgrade in a scratch
// clone and pushes it to the repository.

#include "pantry/orchestrator/pins/bot.h"

#include "bot_git.h"
#include "declined.h"
#include "http_index.h"
#include "run_lock.h"

#include "pantry/orchestrator/pins/decide.h"
#include "pantry/orchestrator/pins/forge.h"
#include "pantry/orchestrator/pins/image_pins.h"
#include "pantry/orchestrator/pins/image_refs.h"
#include "pantry/orchestrator/pins/requirements_file.h"
#include "pantry/text.h"
#include "pantry/text_file.h"

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
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

// The commit message of a plan: old -> new as the subject, then why, when and what else.
std::string commit_message(const pin_plan& plan) {
  std::string m = "pins: " + summary(plan) + "\n\n";
  for (const auto& r : plan.reasons)
    m += r + "\n";
  if (plan.change->upload_time) m += "\nUploaded: " + *plan.change->upload_time + "\n";
  m += "Pinned version yanked: ";
  m += plan.old_yanked ? "yes" + (plan.old_yank_reason.empty() ? std::string()
                                                               : " (" + plan.old_yank_reason + ")")
                       : std::string("no");
  m += "\n";
  return m;
}

// One branch with one commit for `plan`, in the scratch clone `clone` from commit `base`, pushed
// to its origin. Returns the branch's name, or nullopt when origin already has it.
result<std::optional<std::string>> make_branch(const std::string& git, const fs::path& clone,
                                               const std::string& base, const std::string& file,
                                               const requirements_file& doc, const pin_plan& plan) {
  const std::string branch = "pantry/pins/" + plan.name + "-" + plan.change->new_version.str();
  auto exists = remote_has(git, clone, branch);
  if (!exists) return exists.error();
  if (*exists) return std::optional<std::string>();
  auto edited = doc;
  if (auto applied = apply(edited, plan); !applied) return applied.error();
  if (auto r =
          commit_branch(git, clone, base, branch, {{file, edited.render()}}, commit_message(plan));
      !r)
    return r.error();
  return std::optional<std::string>(branch);
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
// the scratch clone `clone` at `base`. Returns the branch's name, or nullopt when origin already
// has it.
result<std::optional<std::string>> make_image_branch(const std::string& git, const fs::path& clone,
                                                     const std::string& base,
                                                     const moved_image& moved) {
  const std::string branch = image_branch(moved.plan);
  auto exists = remote_has(git, clone, branch);
  if (!exists) return exists.error();
  if (*exists) return std::optional<std::string>();
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
  if (auto r = commit_branch(git, clone, base, branch, files, image_commit_message(moved)); !r)
    return r.error();
  return std::optional<std::string>(branch);
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

  // Opens or updates the pull request of `branch` and reports what happened. Returns false when
  // the branch's pull request was closed without merging (the version is declined from now on).
  result<bool> handle(const std::string& branch, const std::string& message) {
    auto closed = forge.closed_unmerged(branch);
    if (!closed) return closed.error();
    if (*closed) {
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
      return false;
    }
    const std::size_t nl = message.find('\n');
    const std::string title = message.substr(0, nl);
    const std::string body =
        nl == std::string::npos ? std::string() : std::string(trim_ascii_space(message.substr(nl)));
    // At the limit only an open one is updated. Below it the forge is asked to open one, and its
    // "already exists" (GitHub's 422) turns into an update of that one.
    if (max_open != 0 && open_now >= max_open) {
      auto existing = forge.find_open(branch);
      if (!existing) return existing.error();
      if (!*existing) {
        out.line("    no pull request: " + std::to_string(open_now) +
                 " of pantry/pins/* are open " + "(pins.max_open " + std::to_string(max_open) +
                 ")");
        return true;
      }
    }
    auto made = forge.open_or_update(branch, base, title, body);
    if (!made) return made.error();
    if (made->created) {
      ++open_now;
      out.line("    opened " + made->pr.url);
    } else {
      out.line("    already open: " + made->pr.url + " (title and description updated)");
    }
    return true;
  }
};

}  // namespace

bot_outcome run_bot(const config::config& cfg, const bot_options& opt, const bot_output& out) {
  bot_outcome outcome;
  const auto fail = [&](const std::string& message) {
    out.problem(message);
    outcome.status = kExitError;
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
  auto url = opt.pantry_url ? opt.pantry_url()
                            : result<std::string>(error(errc::invalid_argument, "no pantry URL"));
  if (!url) return fail(url.error().message);
  if (opt.open_prs && !bump) return fail("--open-prs is for pins bump (check changes nothing)");
  std::unique_ptr<run_lock> lock;
  std::optional<declined_record> declined;
  if (bump) {
    auto locked = run_lock::acquire(cfg.data_dir);
    if (!locked) return fail(locked.error().message);
    lock = std::move(*locked);
    auto loaded = declined_record::load(fs::path(cfg.data_dir) / "pins" / "declined.tsv");
    if (!loaded) return fail(loaded.error().message);
    declined.emplace(std::move(*loaded));
  }
  std::string git;
  if (bump) {
    auto found = git_program();
    if (!found) return fail(found.error().message);
    git = *found;
  }
  http_index index(*url);
  const auto source = index.source();

  bool errors = false;
  bool outdated = false;
  std::size_t& checked = outcome.checked;
  const auto stopped = [&] { return opt.stop_requested && opt.stop_requested(); };
  const std::string kStopped = "stopped before its end: pantry is shutting down";
  for (const auto* repo : repos) {
    if (stopped()) return fail(kStopped);
    if (repo->path.empty()) {
      errors = true;
      out.problem(repo->name + ": " + repo->url +
                  " is a git URL; pins reads local clones only so far (set path:)");
      continue;
    }
    // bump reads and edits the files of a scratch clone, never the user's working tree.
    std::unique_ptr<scratch_dir> scratch;
    fs::path root = repo->path;
    std::string base;
    if (bump) {
      auto made = scratch_dir::make();
      if (!made) return fail(made.error().message);
      scratch = std::move(*made);
      root = scratch->path() / "clone";
      std::vector<std::string> args = {"clone", "--quiet", "--no-hardlinks"};
      if (!repo->branch.empty()) args.insert(args.end(), {"--branch", repo->branch});
      args.insert(args.end(), {"--", repo->path, root.string()});
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
              pr_opener{*repo, *forge, *declined, out, into, cfg.pins.max_open, open->size()});
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
    // The moved image tags of this repository, by NAME:TAG: one branch each, made once every
    // file was read (a tag may be pinned in more than one place).
    std::map<std::string, moved_image> moved_images;
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
        print_plan(out, where, *plan);
        if (plan->result == pin_plan::outcome::upgrade ||
            plan->result == pin_plan::outcome::skipped)
          outdated = true;
        if (!bump || plan->result != pin_plan::outcome::upgrade) continue;
        const std::string name =
            "pantry/pins/" + plan->name + "-" + plan->change->new_version.str();
        if (declined->has(repo->name, name)) {
          out.line(
              "    declined before (its pull request was closed without merging): skipped; "
              "see " +
              declined->file().string());
          continue;
        }
        auto branch = make_branch(git, root, base, file, *doc, *plan);
        if (!branch) {
          errors = true;
          out.problem(where + ": " + branch.error().message);
        } else if (*branch) {
          out.line("    made branch " + **branch);
        } else {
          out.line("    branch " + name + " exists: left as it is");
        }
        if (branch && opener) {
          auto handled = opener->handle(name, commit_message(*plan));
          if (!handled) {
            errors = true;
            out.problem(where + ": " + handled.error().message);
          }
        }
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
      } else if (*branch) {
        out.line(where + ": made branch " + **branch);
      } else {
        out.line(where + ": branch " + name + " exists: left as it is");
      }
      if (branch && opener) {
        auto handled = opener->handle(name, image_commit_message(moved));
        if (!handled) {
          errors = true;
          out.problem(where + ": " + handled.error().message);
        }
      }
    }
  }
  if (opt.only && checked == 0 && !errors)
    return fail("--only " + *opt.only + ": no file of the checked repositories pins it");
  if (errors) {
    outcome.status = kExitError;
  } else if (!bump && outdated) {
    outcome.status = kExitOutdated;
  }
  return outcome;
}

}  // namespace pantry::orchestrator::pins
