// `pantry pins check` and `pantry pins bump`: the configured repositories' requirements files,
// decided one pin at a time with pantry's PyPI index over HTTP; check writes nothing, bump makes
// one branch per upgrade in a scratch clone and pushes it to the repository.

#include "pins.h"
#include "warm.h"

#include "pantry/app/control.h"
#include "pantry/config/config.h"
#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/orchestrator/pins/decide.h"
#include "pantry/orchestrator/pins/forge.h"
#include "pantry/orchestrator/pins/image_pins.h"
#include "pantry/orchestrator/pins/image_refs.h"
#include "pantry/orchestrator/pins/requirements_file.h"
#include "pantry/orchestrator/runner/process.h"
#include "pantry/registry/pypi/negotiate.h"
#include "pantry/registry/pypi/simple.h"
#include "pantry/text.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

extern char** environ;

namespace pantry::cli {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
namespace pins = orchestrator::pins;
namespace pypi = registry::pypi;
namespace runner = orchestrator::runner;
using orchestrator::coordinator::api_client;

constexpr int kExitCurrent = 0;
constexpr int kExitOutdated = 1;
constexpr int kExitError = 2;
// PyPI's largest JSON pages are tens of MiB; a METADATA is at most a few hundred KiB.
constexpr std::size_t kMaxPage = std::size_t{256} << 20;
constexpr std::size_t kMaxMetadata = std::size_t{16} << 20;

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

// The path part of an absolute URL ("/files/..."); pantry's pages point at pantry itself.
std::string path_of(const std::string& url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const std::size_t slash = url.find('/', scheme + 3);
  return slash == std::string::npos ? "/" : url.substr(slash);
}

// pantry's index as the engine asks it: one GET per page and per METADATA, each asked once; and
// pantry's registry, one HEAD per image tag, each asked once.
class http_index {
 public:
  explicit http_index(std::string base) : base_(base), client_(std::move(base), "", options()) {}

  pins::index_source source() {
    return {[this](const std::string& name) { return page(name); },
            [this](const std::string& name, const pypi::version& v, const pypi::file_entry& f) {
              return metadata(name, v, f);
            }};
  }

  // The digest `ref`'s tag points at in pantry's registry now (image_pins.h).
  result<std::string> tag_digest(const runner::image_reference& ref) {
    const std::string key = ref.name + ":" + ref.tag;
    if (auto it = tags_.find(key); it != tags_.end()) return it->second;
    const pins::tag_request request = pins::tag_digest_request(ref);
    http::fields headers;
    headers.set(http::field::accept, request.accept);
    auto r = client_.call(http::verb::head, request.path, {}, headers);
    if (!r) {
      return error(r.error().code,
                   "image " + key + ": pantry's registry at " + base_ + ": " + r.error().message);
    }
    std::optional<std::string_view> digest;
    if (auto it = r->headers.find("Docker-Content-Digest"); it != r->headers.end())
      digest = it->value();
    auto read = pins::read_tag_digest(ref, r->status, digest);
    if (!read) return read.error();
    tags_.emplace(key, *read);
    return *read;
  }

 private:
  static orchestrator::coordinator::api_client_options options() {
    orchestrator::coordinator::api_client_options o;
    o.user_agent = "pantry-pins/" PANTRY_VERSION;
    // pantry answers a page once its upstreams have; these leave its own timeouts to report first.
    o.header_timeout = std::chrono::seconds(120);
    o.idle_timeout = std::chrono::seconds(60);
    return o;
  }

  result<pypi::project_page> page(const std::string& name) {
    if (auto it = pages_.find(name); it != pages_.end()) return it->second;
    const std::string path = "/simple/" + name + "/";
    http::fields headers;
    headers.set(http::field::accept, std::string(pypi::kContentTypeJson));
    auto r = client_.call(http::verb::get, path, {}, headers, kMaxPage);
    if (!r) return error(r.error().code, "the index at " + base_ + ": " + r.error().message);
    if (r->status == 404) return error(errc::not_found, "the index has no project " + name);
    if (r->status != 200) return api_client::failure("reading the project page of " + name, *r);
    auto parsed = pypi::parse_project_json(r->body, base_ + path);
    if (!parsed) return error(parsed.error().code, base_ + path + ": " + parsed.error().message);
    pages_.emplace(name, *parsed);
    return *parsed;
  }

  result<std::string> metadata(const std::string& name, const pypi::version& v,
                               const pypi::file_entry& f) {
    const std::string path = path_of(f.url) + ".metadata";
    auto r = client_.call(http::verb::get, path, {}, {}, kMaxMetadata);
    if (!r) return error(r.error().code, "the index at " + base_ + ": " + r.error().message);
    if (r->status != 200)
      return api_client::failure(
          "reading the metadata of " + name + " " + v.str() + " (" + f.filename + ")", *r);
    return std::move(r->body);
  }

  std::string base_;
  api_client client_;
  std::map<std::string, pypi::project_page> pages_;
  std::map<std::string, std::string> tags_;
};

// --pantry, else $PANTRY_URL, else the serve of the config's data dir.
result<std::string> index_url(const pins_check_options& opt, const config::config& cfg) {
  if (opt.pantry) return *opt.pantry;
  if (const char* env = std::getenv("PANTRY_URL"); env && *env) {
    std::string url = env;
    while (url.ends_with("/"))
      url.pop_back();
    return url;
  }
  auto found = app::find_control(cfg.data_dir);
  if (!found) return found.error();
  if (!*found)
    return error(errc::not_found, "no `pantry serve` holds the data dir " + cfg.data_dir +
                                      "; start one, or give --pantry URL of a pantry that runs");
  return (*found)->url;
}

void print_plan(const std::string& where, const pins::pin_plan& plan) {
  std::cout << where << ": " << pins::summary(plan) << '\n';
  for (const auto& r : plan.reasons)
    std::cout << "    " << r << '\n';
  if (!plan.change || plan.result != pins::pin_plan::outcome::upgrade) return;
  const auto hashes = [](const pins::pin_change& c) {
    for (const auto& h : c.hashes)
      std::cout << "    " << c.name << " " << c.new_version.str() << " --hash=" << h << '\n';
  };
  hashes(*plan.change);
  for (const auto& c : plan.co_upgrades)
    hashes(c);
  for (const auto& c : plan.added)
    hashes(c);
}

// The git CLI, found on PATH.
result<std::string> git_program() {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path && *path ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    const std::size_t colon = dirs.find(':');
    const fs::path candidate = fs::path(dirs.substr(0, colon)) / "git";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
  }
  return error(errc::not_found, "git is not on PATH; pins bump makes its branches with it");
}

// Runs git with `args`; its stdout, or an error naming the command and git's own message.
result<std::string> run_git(const std::string& git, std::vector<std::string> args) {
  runner::spawn_options o;
  o.program = git;
  o.args = std::move(args);
  o.output = runner::output_mode::separate;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    o.env.emplace_back(*e);
  o.env.emplace_back("GIT_TERMINAL_PROMPT=0");
  auto out = runner::run_process(o, std::chrono::minutes(10));
  if (!out) return out.error();
  if (!out->status.success()) {
    std::string shown = "git";
    for (const auto& a : o.args)
      shown += " " + a;
    std::string err = out->err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' '))
      err.pop_back();
    return error(errc::io_error,
                 shown + ": " + runner::to_string(out->status) + (err.empty() ? "" : ": " + err));
  }
  return std::move(out->out);
}

// A scratch directory, removed with everything in it when this goes.
class scratch_dir {
 public:
  static result<std::unique_ptr<scratch_dir>> make() {
    const fs::path base = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    std::string templ = (base / "pantry-pins-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr)
      return error(errc::io_error, "cannot make a scratch directory in " + base.string() + ": " +
                                       std::strerror(errno));
    return std::unique_ptr<scratch_dir>(new scratch_dir(templ));
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const noexcept { return path_; }

 private:
  explicit scratch_dir(fs::path p) : path_(std::move(p)) {}
  fs::path path_;
};

// The commit message of a plan: old -> new as the subject, then why, when and what else.
std::string commit_message(const pins::pin_plan& plan) {
  std::string m = "pins: " + pins::summary(plan) + "\n\n";
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

// True when origin of the scratch clone `clone` has `branch` already.
result<bool> remote_has(const std::string& git, const fs::path& clone, const std::string& branch) {
  auto remote = run_git(
      git, {"-C", clone.string(), "ls-remote", "--heads", "origin", "refs/heads/" + branch});
  if (!remote) return remote.error();
  return !remote->empty();
}

// Branch `branch` from commit `base` in the scratch clone `clone`, with one commit writing
// `files` (path in the repository -> new content) and `message`, pushed to its origin.
result<void> commit_branch(const std::string& git, const fs::path& clone, const std::string& base,
                           const std::string& branch,
                           const std::map<std::string, std::string>& files,
                           const std::string& message) {
  const std::string dir = clone.string();
  if (auto r = run_git(git, {"-C", dir, "checkout", "--quiet", "-B", branch, base}); !r)
    return r.error();
  std::vector<std::string> add = {"-C", dir, "add", "--"};
  for (const auto& [file, content] : files) {
    std::ofstream out(clone / file, std::ios::binary | std::ios::trunc);
    out << content;
    out.close();
    if (!out) return error(errc::io_error, (clone / file).string() + ": write failed");
    add.push_back(file);
  }
  const std::vector<std::vector<std::string>> steps = {
      add,
      {"-C", dir, "-c", "user.name=pantry", "-c", "user.email=pantry@localhost", "commit",
       "--quiet", "--no-verify", "-m", message},
      {"-C", dir, "push", "--quiet", "origin", "refs/heads/" + branch + ":refs/heads/" + branch},
  };
  for (const auto& args : steps) {
    if (auto r = run_git(git, args); !r) return r.error();
  }
  return {};
}

// One branch with one commit for `plan`, in the scratch clone `clone` from commit `base`, pushed
// to its origin. Returns the branch's name, or nullopt when origin already has it.
result<std::optional<std::string>> make_branch(const std::string& git, const fs::path& clone,
                                               const std::string& base, const std::string& file,
                                               const pins::requirements_file& doc,
                                               const pins::pin_plan& plan) {
  const std::string branch = "pantry/pins/" + plan.name + "-" + plan.change->new_version.str();
  auto exists = remote_has(git, clone, branch);
  if (!exists) return exists.error();
  if (*exists) return std::optional<std::string>();
  auto edited = doc;
  if (auto applied = pins::apply(edited, plan); !applied) return applied.error();
  if (auto r =
          commit_branch(git, clone, base, branch, {{file, edited.render()}}, commit_message(plan));
      !r)
    return r.error();
  return std::optional<std::string>(branch);
}

// A moved image tag of one repository: its plan and every place that pins it.
struct moved_image {
  pins::image_plan plan;
  std::map<std::string, std::vector<pins::image_site>> sites;  // file -> references in it
};

// The commit message of an image bump: old -> new as the subject, then where.
std::string image_commit_message(const moved_image& moved) {
  std::string m = pins::summary(moved.plan) + "\n\nThe tag " + moved.plan.name + ":" +
                  moved.plan.tag + " points at " + moved.plan.new_digest +
                  " in pantry's registry now.\n";
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
  const std::string branch = pins::image_branch(moved.plan);
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
      auto replaced = pins::replace_digest(edited, *it, moved.plan.new_digest);
      if (!replaced) return error(replaced.error().code, file + ": " + replaced.error().message);
      edited = std::move(*replaced);
    }
    files.emplace(file, std::move(edited));
  }
  if (auto r = commit_branch(git, clone, base, branch, files, image_commit_message(moved)); !r)
    return r.error();
  return std::optional<std::string>(branch);
}

// The versions declined on a forge (a pull request closed without merging), which bump skips
// from then on: <data_dir>/pins/declined.tsv, one "REPOSITORY<TAB>BRANCH<TAB>URL" a line, appended
// to as they are found. A person may delete a line to have the version proposed again.
class declined_record {
 public:
  static result<declined_record> load(fs::path file) {
    declined_record d;
    d.file_ = std::move(file);
    std::error_code ec;
    if (!fs::exists(d.file_, ec)) return d;
    auto text = read_text_file(d.file_);
    if (!text) return text.error();
    std::istringstream lines(*text);
    std::string line;
    while (std::getline(lines, line)) {
      const std::size_t tab = line.find('\t');
      if (tab == std::string::npos) continue;
      const std::size_t end = line.find('\t', tab + 1);
      d.entries_.emplace(line.substr(0, tab), line.substr(tab + 1, end - tab - 1));
    }
    return d;
  }

  bool has(const std::string& repo, const std::string& branch) const {
    return entries_.contains({repo, branch});
  }

  result<void> add(const std::string& repo, const std::string& branch, const std::string& url) {
    std::error_code ec;
    fs::create_directories(file_.parent_path(), ec);
    if (ec) {
      return error(errc::io_error,
                   file_.parent_path().string() + ": cannot create: " + ec.message());
    }
    std::ofstream out(file_, std::ios::binary | std::ios::app);
    out << repo << '\t' << branch << '\t' << url << '\n';
    out.close();
    if (!out) return error(errc::io_error, file_.string() + ": write failed");
    entries_.emplace(repo, branch);
    return {};
  }

  const fs::path& file() const noexcept { return file_; }

 private:
  fs::path file_;
  std::set<std::pair<std::string, std::string>> entries_;
};

// One repository's pull requests during a bump: how many of pantry/pins/* are open, and the
// pull request of each branch.
struct pr_opener {
  const config::pins_repository& repo;
  pins::forge_client& forge;
  declined_record& declined;
  std::string base;   // the branch the pull requests merge into
  unsigned max_open;  // 0: no limit
  std::size_t open_now;

  // Opens or updates the pull request of `branch` and prints what happened. Returns false when
  // the branch's pull request was closed without merging (the version is declined from now on).
  result<bool> handle(const std::string& branch, const std::string& message) {
    auto closed = forge.closed_unmerged(branch);
    if (!closed) return closed.error();
    if (*closed) {
      auto listed = forge.list(pins::pr_state::closed, branch);
      if (!listed) return listed.error();
      std::string url;
      for (const auto& pr : *listed) {
        if (!pr.merged) {
          url = pr.url;
          break;
        }
      }
      if (auto r = declined.add(repo.name, branch, url); !r) return r.error();
      std::cout << "    declined: " << url << " was closed without merging; this version is "
                << "skipped from now on (" << declined.file().string() << ")\n";
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
        std::cout << "    no pull request: " << open_now << " of pantry/pins/* are open "
                  << "(pins.max_open " << max_open << ")\n";
        return true;
      }
    }
    auto made = forge.open_or_update(branch, base, title, body);
    if (!made) return made.error();
    if (made->created) {
      ++open_now;
      std::cout << "    opened " << made->pr.url << '\n';
    } else {
      std::cout << "    already open: " << made->pr.url << " (title and description updated)\n";
    }
    return true;
  }
};

int run_pins(const pins_check_options& opt, bool bump) {
  const std::string command = bump ? "pins bump" : "pins check";
  const auto fail = [&](const std::string& message) {
    std::cerr << "pantry: " << command << ": " << message << '\n';
    return kExitError;
  };
  config::config cfg = config::defaults();
  if (opt.config_file) {
    auto loaded = config::load_file(*opt.config_file);
    if (!loaded) return fail(loaded.error().message);
    cfg = std::move(*loaded);
  }
  const std::string shown_config = opt.config_file ? *opt.config_file : "the built-in config";
  if (cfg.pins.repositories.empty())
    return fail("pins.repositories is empty in " + shown_config + ": nothing to check");
  std::vector<const config::pins_repository*> repos;
  for (const auto& r : cfg.pins.repositories) {
    if (!opt.repo || r.name == *opt.repo) repos.push_back(&r);
  }
  if (repos.empty()) {
    std::string names;
    for (const auto& r : cfg.pins.repositories)
      names += (names.empty() ? "" : ", ") + r.name;
    return fail("--repo " + quote_for_message(*opt.repo) + " is not a repository of pins in " +
                shown_config + " (it has " + names + ")");
  }
  auto policy = pins::upgrade_policy::from_config(cfg.pins, std::chrono::system_clock::now());
  if (!policy) return fail(policy.error().message);
  auto url = index_url(opt, cfg);
  if (!url) return fail(url.error().message);
  if (opt.open_prs && !bump) return fail("--open-prs is for pins bump (check changes nothing)");
  std::optional<declined_record> declined;
  if (bump) {
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
  std::size_t checked = 0;
  for (const auto* repo : repos) {
    if (repo->path.empty()) {
      errors = true;
      std::cerr << "pantry: " << command << ": " << repo->name << ": " << repo->url
                << " is a git URL; pins reads local clones only so far (set path:)\n";
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
        std::cerr << "pantry: " << command << ": " << repo->name << ": " << cloned.error().message
                  << '\n';
        continue;
      }
      auto head = run_git(git, {"-C", root.string(), "rev-parse", "HEAD"});
      if (!head) return fail(head.error().message);
      base = std::string(trim_ascii_space(*head));
    }
    std::unique_ptr<pins::forge_client> forge;
    std::optional<pr_opener> opener;
    if (opt.open_prs) {
      if (repo->forge.kind == config::pins_forge_kind::none) {
        errors = true;
        std::cerr << "pantry: " << command << ": " << repo->name
                  << ": --open-prs needs the repository's forge (pins.repositories[].forge: kind, "
                     "api, repository, token_file)\n";
        continue;
      }
      auto made = pins::forge_client::create(repo->forge);
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
        auto open = forge->list(pins::pr_state::open, "pantry/pins/");
        if (open) {
          opener.emplace(
              pr_opener{*repo, *forge, *declined, into, cfg.pins.max_open, open->size()});
        } else {
          failed = open.error();
        }
      }
      if (failed) {
        errors = true;
        std::cerr << "pantry: " << command << ": " << repo->name << ": " << failed->message << '\n';
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
        std::cerr << "pantry: " << command << ": " << repo->name << ": " << text.error().message
                  << '\n';
        continue;
      }
      if (is_image_file(file)) {
        result<pins::image_sites> found = pins::image_sites{};
        if (is_pipeline_file(file)) {
          found = pins::find_pipeline_images(*text, shown);
        } else {
          found = pins::find_containerfile_images(*text);
        }
        if (!found) {
          errors = true;
          std::cerr << "pantry: " << command << ": " << found.error().message
                    << "\npantry: " << command << ": " << shown << " is left as it is\n";
          continue;
        }
        for (const auto& skipped : found->skipped) {
          if (opt.only) continue;
          std::cout << shown << ":" << skipped.line << ": image " << skipped.written
                    << ": not checked: " << skipped.reason << '\n';
        }
        for (const auto& site : found->images) {
          const auto& ref = site.reference;
          if (opt.only && ref.name != *opt.only) continue;
          const std::string where = shown + ":" + std::to_string(site.line);
          if (auto unchecked = pins::unchecked_image(ref)) {
            std::cout << where << ": " << pins::summary(*unchecked) << '\n';
            continue;
          }
          auto digest = index.tag_digest(ref);
          if (!digest) {
            // A registry that refuses or cannot be reached decides nothing: stop, change nothing.
            std::cerr << "pantry: " << command << ": " << where << ": " << digest.error().message
                      << '\n';
            return kExitError;
          }
          ++checked;
          auto plan = pins::decide_image(ref, *digest);
          std::cout << where << ": " << pins::summary(plan) << '\n';
          if (plan.result != pins::image_plan::outcome::moved) continue;
          outdated = true;
          auto& moved = moved_images[ref.name + ":" + ref.tag];
          moved.plan = std::move(plan);
          moved.sites[file].push_back(site);
        }
        continue;
      }
      auto doc = pins::requirements_file::parse(std::move(*text), shown);
      if (!doc) {
        errors = true;
        std::cerr << "pantry: " << command << ": " << doc.error().message << "\npantry: " << command
                  << ": " << shown << " is left as it is\n";
        continue;
      }
      const auto& reqs = doc->requirements();
      for (std::size_t i = 0; i < reqs.size(); ++i) {
        if (opt.only && reqs[i].name != *opt.only) continue;
        if (!reqs[i].pinned_version())
          continue;  // a range or URL: pip resolves it, nothing to move
        auto plan = pins::decide(*doc, i, *policy, source);
        if (!plan) {
          // An unreachable index decides nothing at all: stop instead of failing each pin alike.
          std::cerr << "pantry: " << command << ": " << shown << ":" << reqs[i].line << ": "
                    << reqs[i].name << ": " << plan.error().message << '\n';
          if (!plan.error().is(errc::not_found)) return kExitError;
          errors = true;
          continue;
        }
        ++checked;
        const std::string where = shown + ":" + std::to_string(reqs[i].line);
        print_plan(where, *plan);
        if (plan->result == pins::pin_plan::outcome::upgrade ||
            plan->result == pins::pin_plan::outcome::skipped)
          outdated = true;
        if (!bump || plan->result != pins::pin_plan::outcome::upgrade) continue;
        const std::string name =
            "pantry/pins/" + plan->name + "-" + plan->change->new_version.str();
        if (declined->has(repo->name, name)) {
          std::cout << "    declined before (its pull request was closed without merging): "
                    << "skipped; see " << declined->file().string() << '\n';
          continue;
        }
        auto branch = make_branch(git, root, base, file, *doc, *plan);
        if (!branch) {
          errors = true;
          std::cerr << "pantry: " << command << ": " << where << ": " << branch.error().message
                    << '\n';
        } else if (*branch) {
          std::cout << "    made branch " << **branch << '\n';
        } else {
          std::cout << "    branch pantry/pins/" << plan->name << "-"
                    << plan->change->new_version.str() << " exists: left as it is\n";
        }
        if (branch && opener) {
          auto handled = opener->handle(name, commit_message(*plan));
          if (!handled) {
            errors = true;
            std::cerr << "pantry: " << command << ": " << where << ": " << handled.error().message
                      << '\n';
          }
        }
      }
    }
    if (!bump) continue;
    for (const auto& [key, moved] : moved_images) {
      const std::string where = repo->name + ": image " + key;
      const std::string name = pins::image_branch(moved.plan);
      if (declined->has(repo->name, name)) {
        std::cout << where << ": declined before (its pull request was closed without merging): "
                  << "skipped; see " << declined->file().string() << '\n';
        continue;
      }
      auto branch = make_image_branch(git, root, base, moved);
      if (!branch) {
        errors = true;
        std::cerr << "pantry: " << command << ": " << where << ": " << branch.error().message
                  << '\n';
      } else if (*branch) {
        std::cout << where << ": made branch " << **branch << '\n';
      } else {
        std::cout << where << ": branch " << name << " exists: left as it is\n";
      }
      if (branch && opener) {
        auto handled = opener->handle(name, image_commit_message(moved));
        if (!handled) {
          errors = true;
          std::cerr << "pantry: " << command << ": " << where << ": " << handled.error().message
                    << '\n';
        }
      }
    }
  }
  if (opt.only && checked == 0 && !errors)
    return fail("--only " + *opt.only + ": no file of the checked repositories pins it");
  if (errors) return kExitError;
  if (bump) return kExitCurrent;
  return outdated ? kExitOutdated : kExitCurrent;
}

}  // namespace

int run_pins_check(const pins_check_options& opt) {
  return run_pins(opt, false);
}

int run_pins_bump(const pins_check_options& opt) {
  return run_pins(opt, true);
}

}  // namespace pantry::cli
