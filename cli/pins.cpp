// `pantry pins check`: the configured repositories' requirements files, decided one pin at a
// time with pantry's PyPI index over HTTP; nothing is written.

#include "pins.h"

#include "pantry/app/control.h"
#include "pantry/config/config.h"
#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/orchestrator/pins/decide.h"
#include "pantry/orchestrator/pins/requirements_file.h"
#include "pantry/registry/pypi/negotiate.h"
#include "pantry/registry/pypi/simple.h"
#include "pantry/text.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace pantry::cli {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
namespace pins = orchestrator::pins;
namespace pypi = registry::pypi;
using orchestrator::coordinator::api_client;

constexpr int kExitCurrent = 0;
constexpr int kExitOutdated = 1;
constexpr int kExitError = 2;
// PyPI's largest JSON pages are tens of MiB; a METADATA is at most a few hundred KiB.
constexpr std::size_t kMaxPage = std::size_t{256} << 20;
constexpr std::size_t kMaxMetadata = std::size_t{16} << 20;

result<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error(errc::not_found, path.string() + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return error(errc::io_error, path.string() + ": read failed");
  return text.str();
}

// Files whose pins are images (Containerfiles, .pantry.yml), which `pins check` does not read yet.
bool is_image_file(const fs::path& file) {
  const std::string name = ascii_lower(file.filename().string());
  return name == ".pantry.yml" || name == ".pantry.yaml" || name.find("containerfile") == 0 ||
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

// pantry's index as the engine asks it: one GET per page and per METADATA, each asked once.
class http_index {
 public:
  explicit http_index(std::string base) : base_(base), client_(std::move(base), "", options()) {}

  pins::index_source source() {
    return {[this](const std::string& name) { return page(name); },
            [this](const std::string& name, const pypi::version& v, const pypi::file_entry& f) {
              return metadata(name, v, f);
            }};
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

}  // namespace

int run_pins_check(const pins_check_options& opt) {
  const auto fail = [](const std::string& message) {
    std::cerr << "pantry: pins check: " << message << '\n';
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
  http_index index(*url);
  const auto source = index.source();

  bool errors = false;
  bool outdated = false;
  std::size_t checked = 0;
  for (const auto* repo : repos) {
    if (repo->path.empty()) {
      errors = true;
      std::cerr << "pantry: pins check: " << repo->name << ": " << repo->url
                << " is a git URL; pins check reads local clones only so far (set path:)\n";
      continue;
    }
    for (const auto& file : repo->files) {
      const fs::path full = fs::path(repo->path) / file;
      const std::string shown = repo->name + "/" + file;
      if (is_image_file(file)) {
        std::cout << shown << ": image pins are not checked by pins check yet\n";
        continue;
      }
      auto text = read_file(full);
      if (!text) {
        errors = true;
        std::cerr << "pantry: pins check: " << repo->name << ": " << text.error().message << '\n';
        continue;
      }
      auto doc = pins::requirements_file::parse(std::move(*text), shown);
      if (!doc) {
        errors = true;
        std::cerr << "pantry: pins check: " << doc.error().message
                  << "\npantry: pins check: " << shown << " is left as it is\n";
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
          std::cerr << "pantry: pins check: " << shown << ":" << reqs[i].line << ": "
                    << reqs[i].name << ": " << plan.error().message << '\n';
          if (!plan.error().is(errc::not_found)) return kExitError;
          errors = true;
          continue;
        }
        ++checked;
        print_plan(shown + ":" + std::to_string(reqs[i].line), *plan);
        if (plan->result == pins::pin_plan::outcome::upgrade ||
            plan->result == pins::pin_plan::outcome::skipped)
          outdated = true;
      }
    }
  }
  if (opt.only && checked == 0 && !errors)
    return fail("--only " + *opt.only + ": no file of the checked repositories pins it");
  if (errors) return kExitError;
  return outdated ? kExitOutdated : kExitCurrent;
}

}  // namespace pantry::cli
