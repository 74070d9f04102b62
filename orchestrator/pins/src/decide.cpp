#include "pantry/orchestrator/pins/decide.h"

#include "pantry/registry/pypi/metadata.h"
#include "pantry/registry/pypi/names.h"
#include "pantry/text.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <utility>

namespace pantry::orchestrator::pins {
namespace {

namespace pypi = registry::pypi;
using pypi::version;

// A chain of added requirements longer than this is a loop in the metadata or a project that is
// not a pin bot's business in one patch: the plan is skipped instead.
constexpr std::size_t kMaxProjectsPerPlan = 64;

// PEP 700's "yyyy-mm-ddThh:mm:ss[.ffffff]Z" (or a "+00:00" offset) as a time point; nullopt for
// anything else.
std::optional<std::chrono::system_clock::time_point> parse_upload_time(std::string_view s) {
  const auto num = [&](std::size_t at, std::size_t n) -> std::optional<int> {
    if (at + n > s.size()) return std::nullopt;
    int v = 0;
    const auto [p, ec] = std::from_chars(s.data() + at, s.data() + at + n, v);
    if (ec != std::errc() || p != s.data() + at + n) return std::nullopt;
    return v;
  };
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
    return std::nullopt;
  const auto y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
             se = num(17, 2);
  if (!y || !mo || !d || !h || !mi || !se || *h > 23 || *mi > 59 || *se > 60) return std::nullopt;
  std::size_t at = 19;
  if (at < s.size() && s[at] == '.') {
    ++at;
    while (at < s.size() && s[at] >= '0' && s[at] <= '9')
      ++at;
  }
  const std::string_view zone = s.substr(at);
  if (zone != "Z" && zone != "z" && zone != "+00:00") return std::nullopt;
  const std::chrono::year_month_day date{std::chrono::year(*y), std::chrono::month(unsigned(*mo)),
                                         std::chrono::day(unsigned(*d))};
  if (!date.ok()) return std::nullopt;
  return std::chrono::sys_days(date) + std::chrono::hours(*h) + std::chrono::minutes(*mi) +
         std::chrono::seconds(*se);
}

// rejection()'s reason for a release whose age min_release_age cannot be checked.
constexpr std::string_view kAgeUnknown =
    "the index gives no upload time (nor does its JSON API), so its age is unknown";

std::string human_age(std::chrono::seconds s) {
  const auto n = s.count();
  if (n >= 2 * 86400) return std::to_string(n / 86400) + " days";
  if (n >= 2 * 3600) return std::to_string(n / 3600) + " hours";
  if (n >= 120) return std::to_string(n / 60) + " minutes";
  return std::to_string(n) + " seconds";
}

// One version of a project as its page lists it.
struct release {
  version v;
  std::vector<const pypi::file_entry*> files;  // wheels and sdists of this version
  bool yanked = false;                         // every file is yanked
  std::string yank_reason;
  std::optional<std::string> upload_time;  // earliest of its files
};

// The releases of `page`, newest first: versions read off the file names (PEP 700's `versions`
// only adds versions without files, which cannot be installed and are left out).
std::vector<release> releases_of(const pypi::project_page& page, const std::string& name) {
  std::vector<release> out;
  for (const auto& f : page.files) {
    const auto parsed = pypi::parse_dist_filename(f.filename, name);
    if (!parsed) continue;
    auto v = version::parse(parsed->version);
    if (!v) continue;
    auto it = std::find_if(out.begin(), out.end(), [&](const release& r) { return r.v == *v; });
    if (it == out.end()) {
      out.push_back(release{*v, {}, true, {}, std::nullopt});
      it = std::prev(out.end());
    }
    it->files.push_back(&f);
    if (!f.yanked) {
      it->yanked = false;
    } else if (it->yanked && it->yank_reason.empty()) {
      it->yank_reason = *f.yanked;
    }
    if (f.upload_time && (!it->upload_time || *f.upload_time < *it->upload_time))
      it->upload_time = f.upload_time;
  }
  std::sort(out.begin(), out.end(), [](const release& a, const release& b) { return a.v > b.v; });
  return out;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

// Why `r` may not be proposed under `policy` for `targets` (allowing pre-releases iff
// `prereleases_ok`), or "" when it may.
std::string rejection(const release& r, const upgrade_policy& policy,
                      const std::vector<pypi::marker_environment>& targets, bool prereleases_ok) {
  if (r.v.is_prerelease() && !prereleases_ok) return "a pre-release";
  if (r.yanked) return r.yank_reason.empty() ? "yanked" : "yanked (" + r.yank_reason + ")";
  if (policy.min_release_age.count() > 0) {
    if (!r.upload_time) return std::string(kAgeUnknown);
    const auto at = parse_upload_time(*r.upload_time);
    if (!at) return "its upload time " + quote_for_message(*r.upload_time) + " is not PEP 700's";
    const auto age = std::chrono::duration_cast<std::chrono::seconds>(policy.now - *at);
    if (age < policy.min_release_age)
      return "uploaded " + *r.upload_time + ", younger than min_release_age (" +
             human_age(policy.min_release_age) + ")";
  }
  for (const auto& env : targets) {
    const auto python = version::parse(env.python_full_version);
    if (!python) continue;
    bool admitted = false;
    std::vector<std::string> specs;
    for (const auto* f : r.files) {
      if (f->yanked) continue;
      if (!f->requires_python) {
        admitted = true;
        break;
      }
      const auto set = pypi::specifier_set::parse(*f->requires_python);
      // pip ignores a Requires-Python it cannot read; so does the pin bot.
      if (!set || set->contains(*python, pypi::prereleases::allow)) {
        admitted = true;
        break;
      }
      if (std::find(specs.begin(), specs.end(), *f->requires_python) == specs.end())
        specs.push_back(*f->requires_python);
    }
    if (!admitted) return "requires Python " + join(specs, " or ") + ", not " + env.python_version;
  }
  return "";
}

// Whether `req` (a Requires-Dist) holds for one of `targets`, without an extra or with one of
// `extras` (those the requirement of the file names).
bool requirement_applies(const pypi::requirement& req,
                         const std::vector<pypi::marker_environment>& targets,
                         const std::vector<std::string>& extras) {
  for (auto env : targets) {
    env.extra.clear();
    if (req.applies_to(env)) return true;
    for (const auto& extra : extras) {
      env.extra = extra;
      if (req.applies_to(env)) return true;
    }
  }
  return false;
}

// The reason line of a file listed without a sha256, before it is hashed (hash_missing_files).
std::string no_digest_reason(const pypi::file_entry& f) {
  return "the index gives no sha256 for " + f.filename + ": it must be downloaded to be hashed";
}

// The file to ask metadata for: one that advertises PEP 658 metadata, else the first; a file with
// a sha256 first (pantry serves only those, and their metadata).
const pypi::file_entry* metadata_file(const release& r) {
  for (const bool need_digest : {true, false}) {
    for (const auto* f : r.files) {
      if (f->core_metadata && !f->yanked && (!need_digest || f->sha256())) return f;
    }
  }
  for (const auto* f : r.files) {
    if (f->sha256()) return f;
  }
  return r.files.front();
}

bool prereleases_allowed(const upgrade_policy& policy, const std::optional<version>& pinned) {
  switch (policy.prereleases) {
    case config::pins_prereleases::never:
      return false;
    case config::pins_prereleases::always:
      return true;
    case config::pins_prereleases::if_pinned:
      break;
  }
  return pinned && pinned->is_prerelease();
}

pin_change change_for(const std::string& name, const release& r) {
  pin_change c;
  c.name = name;
  c.new_version = r.v;
  for (const auto* f : r.files) {
    if (f->yanked) continue;
    const auto it = f->hashes.find("sha256");
    if (it != f->hashes.end() && it->second.size() == 64) {
      c.hashes.push_back("sha256:" + it->second);
    } else {
      c.missing_digests.push_back(*f);
    }
  }
  std::sort(c.hashes.begin(), c.hashes.end());
  c.hashes.erase(std::unique(c.hashes.begin(), c.hashes.end()), c.hashes.end());
  c.upload_time = r.upload_time;
  return c;
}

// The targets where `entry`'s own marker holds (all of them when it holds nowhere, so that a
// decision is still made).
std::vector<pypi::marker_environment> targets_of(const requirement_entry& entry,
                                                 const upgrade_policy& policy) {
  std::vector<pypi::marker_environment> out;
  for (const auto& env : policy.targets) {
    if (entry.parsed.applies_to(env)) out.push_back(env);
  }
  return out.empty() ? policy.targets : out;
}

// A project's state while a plan is made.
struct project_state {
  std::optional<version> v;          // its version in the file after the plan (nullopt: not pinned)
  bool movable = false;              // a pin of the file the plan has not moved yet
  std::vector<std::size_t> indexes;  // its requirements in the file
};

// A requirement of a chosen version, still to be checked against the file.
struct pending {
  std::string name;  // normalized
  version v;
  const pypi::file_entry* file;  // one file of it, for the metadata request
  std::vector<std::string> extras;
};

class planner {
 public:
  planner(const requirements_file& doc, const upgrade_policy& policy, const index_source& source)
      : doc_(doc), policy_(policy), source_(source) {}

  result<pin_plan> run(std::size_t index);

 private:
  result<const std::vector<release>*> releases(const std::string& name) {
    auto it = releases_.find(name);
    if (it != releases_.end()) return &it->second.second;
    auto page = source_.page(name);
    if (!page) return page.error();
    auto [slot, inserted] =
        releases_.emplace(name, std::make_pair(std::move(*page), std::vector<release>{}));
    slot->second.second = releases_of(slot->second.first, name);
    return &slot->second.second;
  }

  // Checks the requirements of every pending version; fills plan.co_upgrades and plan.added.
  // Returns "" or the reason the plan cannot be applied.
  result<std::string> check_requirements(pin_plan& plan, std::vector<pending> work);

  // Checks the pins of the file the plan keeps: each one's own Requires-Dist (its pinned
  // version's metadata) must admit the version the plan gives every project it moves. Returns ""
  // or the reason the plan cannot be applied.
  result<std::string> check_kept_pins(const pin_plan& plan);

  const requirements_file& doc_;
  const upgrade_policy& policy_;
  const index_source& source_;
  std::vector<pypi::marker_environment> targets_;
  std::map<std::string, std::pair<pypi::project_page, std::vector<release>>> releases_;
  std::map<std::string, project_state> state_;
};

result<pin_plan> planner::run(std::size_t index) {
  const auto& all = doc_.requirements();
  if (index >= all.size())
    return error(errc::invalid_argument, doc_.path() + ": no requirement #" +
                                             std::to_string(index) + " (it has " +
                                             std::to_string(all.size()) + ")");
  const requirement_entry& entry = all[index];
  pin_plan plan;
  plan.index = index;
  plan.name = entry.name;
  const auto written = entry.pinned_version();
  if (written) {
    if (auto v = version::parse(*written)) plan.old_version = *v;
  }
  for (const auto& glob : policy_.ignore) {
    if (config::glob_match(glob, entry.name)) {
      plan.result = pin_plan::outcome::ignored;
      plan.reasons.push_back("matches pins.ignore " + quote_for_message(glob));
      return plan;
    }
  }
  if (!plan.old_version) {
    plan.result = pin_plan::outcome::unpinned;
    plan.reasons.push_back(written ? "its pin " + quote_for_message(*written) +
                                         " is not a PEP 440 version"
                                   : "not pinned with one == clause");
    return plan;
  }
  targets_ = targets_of(entry, policy_);

  auto rel = releases(entry.name);
  if (!rel) return rel.error();
  const bool pre_ok = prereleases_allowed(policy_, plan.old_version);
  const release* current = nullptr;
  for (const auto& r : **rel) {
    if (r.v == *plan.old_version) current = &r;
  }
  if (current && current->yanked) {
    plan.old_yanked = true;
    plan.old_yank_reason = current->yank_reason;
  }
  const release* chosen = nullptr;
  const release* age_unknown = nullptr;  // the newest newer release only its age keeps out
  std::vector<std::string> passed_over;
  for (const auto& r : **rel) {
    if (!(r.v > *plan.old_version)) break;
    const std::string why = rejection(r, policy_, targets_, pre_ok);
    if (why.empty()) {
      chosen = &r;
      break;
    }
    if (why == kAgeUnknown && !age_unknown) age_unknown = &r;
    passed_over.push_back(r.v.str() + ": " + why);
  }
  if (!chosen && plan.old_yanked) {
    for (const auto& r : **rel) {
      if (r.v < *plan.old_version && rejection(r, policy_, targets_, pre_ok).empty()) {
        chosen = &r;
        break;
      }
    }
  }
  if (plan.old_yanked) {
    plan.reasons.push_back(
        plan.old_version->str() + " is yanked" +
        (plan.old_yank_reason.empty() ? "" : " (" + plan.old_yank_reason + ")") +
        (chosen ? (chosen->v > *plan.old_version ? "; moved to the newest release that qualifies"
                                                 : "; nothing newer qualifies, so moved down to "
                                                   "the nearest release that does")
                : "; no other release qualifies"));
  } else if (!current) {
    plan.reasons.push_back("the index lists no file of the pinned " + plan.old_version->str());
  }
  if (!chosen && age_unknown) {
    // Unknown is not "too young" and not "old enough": say so instead of calling the pin current.
    plan.change = change_for(entry.name, *age_unknown);
    plan.change->index = index;
    plan.change->old_version = plan.old_version;
    plan.reasons.insert(plan.reasons.begin(),
                        "not applied: min_release_age (" + human_age(policy_.min_release_age) +
                            ") cannot be checked for " + age_unknown->v.str() + ": " +
                            std::string(kAgeUnknown));
    plan.reasons.insert(plan.reasons.end(), passed_over.begin(), passed_over.end());
    plan.result = pin_plan::outcome::skipped;
    return plan;
  }
  if (!chosen) {
    plan.reasons.insert(plan.reasons.end(), passed_over.begin(), passed_over.end());
    plan.result = pin_plan::outcome::up_to_date;
    return plan;
  }

  plan.change = change_for(entry.name, *chosen);
  plan.change->index = index;
  plan.change->old_version = plan.old_version;
  if (chosen->v > *plan.old_version && !plan.old_yanked)
    plan.reasons.push_back(chosen->v.str() + " is the newest release that qualifies" +
                           (chosen->upload_time ? " (uploaded " + *chosen->upload_time + ")" : ""));
  plan.reasons.insert(plan.reasons.end(), passed_over.begin(), passed_over.end());
  for (const auto& f : plan.change->missing_digests)
    plan.reasons.push_back(no_digest_reason(f));

  // Every project the file names, as the plan leaves it.
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto& s = state_[all[i].name];
    s.indexes.push_back(i);
    if (const auto p = all[i].pinned_version()) {
      if (auto v = version::parse(*p)) {
        s.v = *v;
        s.movable = true;
      }
    }
  }
  auto& own = state_[entry.name];
  own.v = chosen->v;
  own.movable = false;

  if (chosen->files.empty()) return plan;  // cannot happen: a release has a file
  auto problem = check_requirements(
      plan, {pending{entry.name, chosen->v, metadata_file(*chosen), entry.parsed.extras}});
  if (!problem) return problem.error();
  if (problem->empty()) {
    problem = check_kept_pins(plan);
    if (!problem) return problem.error();
  }
  if (!problem->empty()) {
    plan.result = pin_plan::outcome::skipped;
    plan.reasons.insert(plan.reasons.begin(), "not applied: " + *problem);
    return plan;
  }
  plan.result = pin_plan::outcome::upgrade;
  return plan;
}

result<std::string> planner::check_kept_pins(const pin_plan& plan) {
  std::map<std::string, version> moved;  // normalized name -> its version after the plan
  moved.emplace(plan.name, plan.change->new_version);
  for (const auto& c : plan.co_upgrades)
    moved.emplace(c.name, c.new_version);
  std::set<std::string> checked;
  for (const auto& entry : doc_.requirements()) {
    if (moved.contains(entry.name) || !checked.insert(entry.name).second) continue;
    const auto s = state_.find(entry.name);
    if (s == state_.end() || !s->second.movable || !s->second.v) continue;  // unpinned
    auto rel = releases(entry.name);
    if (!rel && rel.error().is(errc::not_found)) continue;  // nothing to read its needs from
    if (!rel) return rel.error();
    const auto kept = std::find_if((*rel)->begin(), (*rel)->end(),
                                   [&](const release& r) { return r.v == *s->second.v; });
    if (kept == (*rel)->end() || kept->files.empty()) continue;
    auto meta = source_.metadata(entry.name, kept->v, *metadata_file(*kept));
    if (!meta && meta.error().is(errc::not_found)) continue;
    if (!meta) return meta.error();
    const auto targets = targets_of(entry, policy_);
    for (const auto& line : pypi::metadata_fields(*meta, "Requires-Dist")) {
      const auto req = pypi::requirement::parse(line);
      if (!req || !req->url.empty()) continue;  // the pin's own problem, not this plan's
      const auto it = moved.find(normalize_project_name(req->name));
      if (it == moved.end() || !requirement_applies(*req, targets, entry.parsed.extras)) continue;
      if (req->specifiers.contains(it->second, pypi::prereleases::allow)) continue;
      return entry.name + "==" + kept->v.str() + ", a pin this patch keeps, requires " +
             req->str() + ", which " + it->first + " " + it->second.str() + " does not satisfy";
    }
  }
  return std::string();
}

result<std::string> planner::check_requirements(pin_plan& plan, std::vector<pending> work) {
  std::size_t seen = 0;
  while (!work.empty()) {
    const pending item = std::move(work.front());
    work.erase(work.begin());
    if (++seen > kMaxProjectsPerPlan)
      return "more than " + std::to_string(kMaxProjectsPerPlan) +
             " projects would change in one patch";
    auto meta = source_.metadata(item.name, item.v, *item.file);
    if (!meta) return meta.error();
    for (const auto& line : pypi::metadata_fields(*meta, "Requires-Dist")) {
      auto req = pypi::requirement::parse(line);
      if (!req) {
        return item.name + " " + item.v.str() +
               "'s metadata has a Requires-Dist pip cannot read (" + req.error().message + ")";
      }
      if (!requirement_applies(*req, targets_, item.extras)) continue;
      const std::string dep = normalize_project_name(req->name);
      const std::string needed = item.name + " " + item.v.str() + " requires " + req->str();
      auto found = state_.find(dep);
      if (found != state_.end() && !found->second.v) continue;  // named unpinned: pip resolves it
      if (found != state_.end() &&
          (!req->url.empty() ||
           req->specifiers.contains(*found->second.v, pypi::prereleases::allow)))
        continue;
      if (found != state_.end() && !found->second.movable)
        return needed + ", which the pin " + dep + "==" + found->second.v->str() +
               " this patch keeps does not satisfy";
      if (!req->url.empty()) return needed + ": a URL requirement that no pin covers";

      // A co-upgrade of a pin of the file, or a new pin: the newest release that qualifies and
      // satisfies the requirement.
      auto rel = releases(dep);
      if (!rel && rel.error().is(errc::not_found))
        return needed + ", which the index does not have";
      if (!rel) return rel.error();
      const std::optional<version> from = found != state_.end() ? found->second.v : std::nullopt;
      const bool pre_ok = prereleases_allowed(policy_, from) ||
                          (policy_.prereleases != config::pins_prereleases::never &&
                           req->specifiers.names_prerelease());
      const release* pick = nullptr;
      std::vector<std::string> why_not;
      for (const auto& r : **rel) {
        if (!req->specifiers.contains(r.v, pypi::prereleases::allow)) continue;
        const std::string why = rejection(r, policy_, targets_, pre_ok);
        if (why.empty()) {
          pick = &r;
          break;
        }
        why_not.push_back(r.v.str() + " " + why);
      }
      if (!pick)
        return needed + ", and no release of " + dep + " qualifies" +
               (why_not.empty() ? "" : " (" + join(why_not, "; ") + ")");
      pin_change c = change_for(dep, *pick);
      for (const auto& f : c.missing_digests)
        plan.reasons.push_back(no_digest_reason(f));
      if (found != state_.end()) {
        c.old_version = from;
        c.reason = needed;
        for (const auto i : found->second.indexes) {
          if (!doc_.requirements()[i].pinned_version()) continue;
          pin_change one = c;
          one.index = i;
          plan.co_upgrades.push_back(std::move(one));
        }
        plan.reasons.push_back("co-upgrade " + dep + " " + from->str() + " -> " + pick->v.str() +
                               ": " + needed);
        found->second.v = pick->v;
        found->second.movable = false;
      } else {
        c.via = item.name;
        c.reason = needed + ", which no pin of the file covers";
        plan.reasons.push_back("add " + dep + "==" + pick->v.str() + ": " + c.reason);
        plan.added.push_back(c);
        auto& s = state_[dep];
        s.v = pick->v;
        s.movable = false;
      }
      std::vector<std::string> extras = req->extras;
      if (found != state_.end()) {
        for (const auto i : found->second.indexes) {
          const auto& own = doc_.requirements()[i].parsed.extras;
          extras.insert(extras.end(), own.begin(), own.end());
        }
      }
      work.push_back(pending{dep, pick->v, metadata_file(*pick), std::move(extras)});
    }
  }
  return std::string();
}

}  // namespace

result<upgrade_policy> upgrade_policy::from_config(const config::pins_config& pins,
                                                   std::chrono::system_clock::time_point now) {
  upgrade_policy p;
  p.prereleases = pins.prereleases;
  p.min_release_age = pins.min_release_age;
  p.ignore = pins.ignore;
  p.now = now;
  const std::vector<std::string> platforms =
      pins.platforms.empty() ? std::vector<std::string>{"linux-x86_64"} : pins.platforms;
  const std::vector<std::string> pythons =
      pins.python.empty() ? std::vector<std::string>{"3.11"} : pins.python;
  for (const auto& py : pythons) {
    for (const auto& platform : platforms) {
      const std::size_t dash = platform.find('-');
      if (dash == std::string::npos)
        return error(errc::invalid_argument,
                     "pins.platforms: " + quote_for_message(platform) +
                         " is not PLATFORM-MACHINE (e.g. linux-x86_64, macos-arm64)");
      auto env = pypi::marker_environment::for_target(py, platform.substr(0, dash),
                                                      platform.substr(dash + 1));
      if (!env) return error(errc::invalid_argument, "pins: " + env.error().message);
      p.targets.push_back(std::move(*env));
    }
  }
  return p;
}

std::string_view to_string(pin_plan::outcome o) noexcept {
  switch (o) {
    case pin_plan::outcome::up_to_date:
      return "up to date";
    case pin_plan::outcome::upgrade:
      return "upgrade";
    case pin_plan::outcome::skipped:
      return "skipped";
    case pin_plan::outcome::ignored:
      return "ignored";
    case pin_plan::outcome::unpinned:
      return "unpinned";
  }
  return "?";
}

result<pin_plan> decide(const requirements_file& doc, std::size_t index,
                        const upgrade_policy& policy, const index_source& source) {
  planner p(doc, policy, source);
  return p.run(index);
}

result<void> apply(requirements_file& doc, const pin_plan& plan) {
  if (plan.result != pin_plan::outcome::upgrade || !plan.change || !plan.change->index)
    return error(errc::invalid_argument, "pins: the plan for " + plan.name + " is " +
                                             std::string(to_string(plan.result)) +
                                             ", not an upgrade: nothing to apply");
  std::vector<const pin_change*> changes{&*plan.change};
  for (const auto& c : plan.co_upgrades)
    changes.push_back(&c);
  for (const auto& c : plan.added)
    changes.push_back(&c);
  for (const auto* c : changes) {
    // A file left out of the hashes would make pip refuse the file under --require-hashes.
    if (!c->missing_digests.empty())
      return error(errc::invalid_argument,
                   "pins: " + c->name + " " + c->new_version.str() + ": " +
                       c->missing_digests.front().filename +
                       " has no sha256 on the index; download and hash it into the plan's "
                       "hashes (and clear missing_digests) before applying");
  }
  requirements_file edited = doc;
  auto r = edited.set_pin(*plan.change->index, plan.change->new_version, plan.change->hashes);
  if (!r) return r.error();
  for (const auto& c : plan.co_upgrades) {
    if (!c.index) continue;
    r = edited.set_pin(*c.index, c.new_version, c.hashes);
    if (!r) return r.error();
  }
  for (const auto& c : plan.added) {
    // add_pin shifts the indexes after it; every set_pin above is done by then.
    r = edited.add_pin(c.name, c.new_version, c.hashes, c.via);
    if (!r) return r.error();
  }
  doc = std::move(edited);
  return {};
}

result<std::size_t> hash_missing_files(pin_plan& plan, const file_hasher& hash) {
  std::vector<pin_change*> changes;
  if (plan.change) changes.push_back(&*plan.change);
  for (auto& c : plan.co_upgrades)
    changes.push_back(&c);
  for (auto& c : plan.added)
    changes.push_back(&c);
  // Hashed into copies first: an error leaves the plan as it was.
  std::vector<std::vector<std::string>> hashes;
  std::map<std::string, std::string> done;  // filename -> the reason line after hashing
  for (const auto* c : changes) {
    hashes.push_back(c->hashes);
    for (const auto& f : c->missing_digests) {
      auto got = hash(f);
      if (!got) {
        return error(got.error().code, c->name + " " + c->new_version.str() + ": hashing " +
                                           f.filename + ", which the index lists without a " +
                                           "sha256: " + got.error().message);
      }
      hashes.back().push_back(*got);
      done[no_digest_reason(f)] =
          "the index gives no sha256 for " + f.filename + ": downloaded and hashed (" + *got + ")";
    }
  }
  std::size_t hashed = 0;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    auto& h = hashes[i];
    std::sort(h.begin(), h.end());
    h.erase(std::unique(h.begin(), h.end()), h.end());
    changes[i]->hashes = std::move(h);
    hashed += changes[i]->missing_digests.size();
    changes[i]->missing_digests.clear();
  }
  for (auto& r : plan.reasons) {
    if (auto it = done.find(r); it != done.end()) r = it->second;
  }
  return hashed;
}

std::string summary(const pin_plan& plan) {
  const std::string old = plan.old_version ? plan.old_version->str() : "(unpinned)";
  switch (plan.result) {
    case pin_plan::outcome::upgrade:
    case pin_plan::outcome::skipped: {
      std::string s = plan.name + " " + old + " -> " + plan.change->new_version.str();
      for (const auto& c : plan.co_upgrades)
        s += ", " + c.name + " " + (c.old_version ? c.old_version->str() : "") + " -> " +
             c.new_version.str();
      for (const auto& c : plan.added)
        s += ", +" + c.name + " " + c.new_version.str();
      if (plan.result == pin_plan::outcome::skipped) s += " (skipped)";
      return s;
    }
    case pin_plan::outcome::up_to_date:
      return plan.name + " " + old + " up to date";
    case pin_plan::outcome::ignored:
      return plan.name + " " + old + " ignored";
    case pin_plan::outcome::unpinned:
      return plan.name + " not pinned";
  }
  return plan.name;
}

}  // namespace pantry::orchestrator::pins
