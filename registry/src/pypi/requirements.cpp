#include "pantry/registry/pypi/requirements.h"

#include "pantry/registry/pypi/markers.h"
#include "pantry/registry/pypi/names.h"
#include "pantry/registry/pypi/pep440.h"
#include "pantry/registry/pypi/requirements_syntax.h"
#include "text.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <utility>

namespace pantry::registry::pypi {
namespace {

// Deep enough for any real tree of includes; a loop through symbolic links (every spelling of
// the path new) ends here instead of running out of memory.
constexpr int kMaxIncludeDepth = 32;

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

bool ends_with_icase(std::string_view s, std::string_view suffix) noexcept {
  return s.size() >= suffix.size() && ascii_iequals(s.substr(s.size() - suffix.size()), suffix);
}

// ---- wheel tags -------------------------------------------------------------------------------

struct wheel_tags {
  std::vector<std::string> python;
  std::vector<std::string> abi;
  std::vector<std::string> platform;
};

std::vector<std::string> split_tag(std::string_view tag) {
  std::vector<std::string> out;
  for (std::size_t start = 0;;) {
    const std::size_t dot = tag.find('.', start);
    out.push_back(
        ascii_lower(tag.substr(start, dot == std::string_view::npos ? dot : dot - start)));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return out;
}

// The tags of `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`.
std::optional<wheel_tags> parse_wheel_tags(std::string_view filename) {
  if (!ends_with_icase(filename, ".whl")) return std::nullopt;
  if (!parse_dist_filename(filename, "")) return std::nullopt;
  const std::string_view stem = filename.substr(0, filename.size() - 4);
  const std::size_t p3 = stem.rfind('-');
  const std::size_t p2 = stem.rfind('-', p3 - 1);
  const std::size_t p1 = stem.rfind('-', p2 - 1);
  wheel_tags t;
  t.python = split_tag(stem.substr(p1 + 1, p2 - p1 - 1));
  t.abi = split_tag(stem.substr(p2 + 1, p3 - p2 - 1));
  t.platform = split_tag(stem.substr(p3 + 1));
  return t;
}

// Parses unsigned decimal digits (at most 9, so no overflow); nullopt for anything else.
std::optional<unsigned> small_number(std::string_view s) {
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), is_digit)) return std::nullopt;
  unsigned n = 0;
  for (char c : s)
    n = n * 10 + static_cast<unsigned>(c - '0');
  return n;
}

// A libc-versioned Linux platform tag: family ("manylinux", "musllinux"), libc version and
// architecture. The legacy manylinux names are the glibc versions PEP 600 gives them.
struct linux_tag {
  std::string family;
  unsigned major = 0;
  unsigned minor = 0;
  std::string arch;
};

std::optional<linux_tag> parse_linux_tag(std::string_view tag) {
  static constexpr std::array<std::pair<std::string_view, unsigned>, 3> kLegacy = {{
      {"manylinux1_", 5},
      {"manylinux2010_", 12},
      {"manylinux2014_", 17},
  }};
  for (const auto& [prefix, minor] : kLegacy) {
    if (tag.starts_with(prefix) && tag.size() > prefix.size()) {
      return linux_tag{"manylinux", 2, minor, std::string(tag.substr(prefix.size()))};
    }
  }
  for (std::string_view family : {std::string_view("manylinux_"), std::string_view("musllinux_")}) {
    if (!tag.starts_with(family)) continue;
    std::string_view rest = tag.substr(family.size());
    const std::size_t a = rest.find('_');
    if (a == std::string_view::npos) return std::nullopt;
    const std::size_t b = rest.find('_', a + 1);
    if (b == std::string_view::npos || b + 1 >= rest.size()) return std::nullopt;
    auto major = small_number(rest.substr(0, a));
    auto minor = small_number(rest.substr(a + 1, b - a - 1));
    if (!major || !minor) return std::nullopt;
    return linux_tag{std::string(family.substr(0, family.size() - 1)), *major, *minor,
                     std::string(rest.substr(b + 1))};
  }
  return std::nullopt;
}

bool platform_matches(const wheel_tags& t, const std::vector<std::string>& wanted) {
  for (const auto& tag : t.platform) {
    if (tag == "any") return true;
    const auto have = parse_linux_tag(tag);
    for (const auto& w : wanted) {
      if (tag == w) return true;
      if (!have) continue;
      const auto want = parse_linux_tag(w);
      if (want && want->family == have->family && want->arch == have->arch &&
          want->major == have->major && have->minor <= want->minor) {
        return true;
      }
    }
  }
  return false;
}

bool python_matches(const wheel_tags& t, std::pair<unsigned, unsigned> version) {
  const std::string major = std::to_string(version.first);
  const std::string cp_exact = "cp" + major + std::to_string(version.second);
  for (const auto& py : t.python) {
    for (const auto& abi : t.abi) {
      if (py.starts_with("py" + major) && abi == "none") {
        const std::string_view minor = std::string_view(py).substr(2 + major.size());
        if (minor.empty()) return true;
        if (auto m = small_number(minor); m && *m <= version.second) return true;
      }
      if (py == cp_exact && (abi == "none" || abi == "abi3" || abi.starts_with(cp_exact))) {
        return true;
      }
      if (py.starts_with("cp" + major) && abi == "abi3") {
        const std::string_view minor = std::string_view(py).substr(2 + major.size());
        if (auto m = small_number(minor); m && *m <= version.second) return true;
      }
    }
  }
  return false;
}

// ---- requirements files -----------------------------------------------------------------------

constexpr std::string_view kPinsNeeded =
    "cache warm needs every requirement pinned with == (name==version), as pip-compile writes "
    "them";

// Parses the requirement part of a line (PEP 508) and checks that it is a pin.
result<pin> parse_requirement(std::string_view text) {
  const auto quoted = "\"" + std::string(text) + "\"";
  auto not_pinned = [&](std::string_view why) {
    return error(errc::invalid_argument,
                 quoted + ": " + std::string(why) + "; " + std::string(kPinsNeeded));
  };
  // pip reads these as URLs or paths before PEP 508 has a say.
  if (names_url_or_path(text)) {
    return not_pinned("a URL or path names no version on an index");
  }
  auto r = requirement::parse(text);
  if (!r) return r.error();
  if (!r->url.empty()) return not_pinned("a URL requirement names no version on an index");
  const auto& clauses = r->specifiers.clauses();
  if (clauses.empty()) return not_pinned("no version");
  const specifier& clause = clauses.front();
  if (clauses.size() > 1 || (clause.operation != specifier::op::equal &&
                             clause.operation != specifier::op::arbitrary_equal)) {
    return not_pinned("a version range, not a pin");
  }
  if (clause.wildcard) return not_pinned("a wildcard (==X.*) is a range, not a pin");
  pin p;
  p.name = normalize_project_name(r->name);
  p.text = std::string(text);
  p.extras = std::move(r->extras);
  p.arbitrary = clause.operation == specifier::op::arbitrary_equal;
  p.version = clause.text;
  // A pin's marker is kept as written; a pin has no URL, so its first ';' starts the marker.
  if (r->environment) p.marker = std::string(trim_ascii_space(text.substr(text.find(';') + 1)));
  return p;
}

class parser {
 public:
  explicit parser(const file_reader& read) : read_(read) {}

  // Reads and parses the file at `path`, named by `where` ("" for a top-level file).
  void load(const std::string& path, const std::string& where, int depth) {
    const std::string key = std::filesystem::path(path).lexically_normal().string();
    if (!seen_.insert(key).second) return;
    auto text =
        read_ ? read_(path) : result<std::string>(error(errc::not_found, path + ": no reader"));
    if (!text) {
      out_.errors.push_back(where.empty() ? text.error().message
                                          : where + ": " + text.error().message);
      return;
    }
    parse(*text, path, depth);
  }

  void parse(std::string_view text, const std::string& file, int depth) {
    seen_.insert(std::filesystem::path(file).lexically_normal().string());
    for (const auto& line : split_requirements_lines(text)) {
      const std::string where = file + ":" + std::to_string(line.first_number);
      auto parts = split_requirements_line(line.text);
      if (!parts) {
        fail(where, parts.error().message);
      } else if (!parts->requirement.empty()) {
        requirement_line(*parts, where);
      } else if (!parts->options.empty()) {
        option_line(*parts, line.text, file, where, depth);
      }
    }
  }

  requirements take() { return std::move(out_); }

 private:
  void requirement_line(const line_parts& parts, const std::string& where) {
    auto p = parse_requirement(parts.requirement);
    if (!p) {
      fail(where, p.error().message);
      return;
    }
    for (const auto& o : parts.options) {
      if (o.kind == line_option_kind::hash) {
        auto h = parse_hash_option(o.value);
        if (!h) {
          fail(where, "\"" + parts.requirement + "\": " + h.error().message);
          return;
        }
        p->hashes[h->first].insert(h->second);
      } else if (o.kind == line_option_kind::requirement ||
                 o.kind == line_option_kind::constraint || o.kind == line_option_kind::editable) {
        fail(where, o.name + " must be on a line of its own");
        return;
      }
    }
    p->where = where;
    add(std::move(*p));
  }

  void option_line(const line_parts& parts, std::string_view text, const std::string& file,
                   const std::string& where, int depth) {
    for (const auto& o : parts.options) {
      switch (o.kind) {
        case line_option_kind::editable: {
          const std::string_view shown =
              trim_ascii_space(text.substr(0, requirements_comment_start(text)));
          fail(where, "\"" + std::string(shown) +
                          "\": an editable requirement names no version on an index; " +
                          std::string(kPinsNeeded));
          return;
        }
        case line_option_kind::hash:
        case line_option_kind::per_requirement:
          fail(where, o.name + " needs a requirement on the same line");
          return;
        case line_option_kind::requirement:
        case line_option_kind::constraint:
          include(o, file, where, depth);
          break;
        case line_option_kind::index:
        case line_option_kind::other_value:
        case line_option_kind::flag:
          break;
      }
    }
  }

  void include(const line_option& o, const std::string& file, const std::string& where, int depth) {
    if (o.value.find("://") != std::string::npos) {
      fail(where, o.name + " " + o.value + ": files named by URL are not read; name a local file");
      return;
    }
    if (depth + 1 > kMaxIncludeDepth) {
      fail(where, o.name + " " + o.value + ": includes nest deeper than " +
                      std::to_string(kMaxIncludeDepth) + " files (a loop?)");
      return;
    }
    std::filesystem::path target(o.value);
    if (target.is_relative()) target = std::filesystem::path(file).parent_path() / target;
    load(target.lexically_normal().string(), where + ": " + o.name + " " + o.value, depth + 1);
  }

  void add(pin p) {
    const std::string key =
        p.name + (p.arbitrary ? "===" : "==") + (p.arbitrary ? p.version : ascii_lower(p.version));
    auto [it, inserted] = index_.emplace(key, out_.pins.size());
    if (inserted) {
      out_.pins.push_back(std::move(p));
      return;
    }
    auto& first = out_.pins[it->second];
    for (auto& [algorithm, digests] : p.hashes)
      first.hashes[algorithm].insert(digests.begin(), digests.end());
  }

  void fail(const std::string& where, const std::string& message) {
    out_.errors.push_back(where + ": " + message);
  }

  const file_reader& read_;
  std::set<std::string> seen_;
  std::map<std::string, std::size_t> index_;
  requirements out_;
};

enum class dist_kind { wheel, sdist, other };

dist_kind kind_of(std::string_view filename) {
  if (ends_with_icase(filename, ".whl")) return dist_kind::wheel;
  for (std::string_view ext : {".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar"}) {
    if (ends_with_icase(filename, ext)) return dist_kind::sdist;
  }
  return dist_kind::other;
}

bool hash_allowed(const file_entry& f, const pin& p) {
  for (const auto& [algorithm, digests] : p.hashes) {
    auto it = f.hashes.find(algorithm);
    if (it != f.hashes.end() && digests.contains(it->second)) return true;
  }
  return false;
}

std::string describe(const file_filter& filter) {
  std::string out;
  for (const auto& p : filter.platforms)
    out += (out.empty() ? "--platform " : ", --platform ") + p;
  if (filter.python) {
    out += (out.empty() ? "" : ", ") + std::string("--python-version ") +
           std::to_string(filter.python->first) + "." + std::to_string(filter.python->second);
  }
  return out;
}

}  // namespace

std::string pin::str() const {
  return name + (arbitrary ? "===" : "==") + version;
}

requirements parse_requirements(std::string_view text, const std::string& file,
                                const file_reader& read) {
  parser p(read);
  p.parse(text, file, 0);
  return p.take();
}

requirements load_requirements(const std::vector<std::string>& paths, const file_reader& read) {
  parser p(read);
  for (const auto& path : paths)
    p.load(path, "", 0);
  return p.take();
}

std::optional<std::string> normalize_version(std::string_view version) {
  auto v = version::parse(version);
  if (!v) return std::nullopt;
  return v->str();
}

bool version_matches(const pin& p, std::string_view candidate) {
  const auto same_spelling = [&] {
    return ascii_iequals(trim_ascii_space(p.version), trim_ascii_space(candidate));
  };
  if (p.arbitrary) return same_spelling();
  auto want = version::parse(p.version);
  auto have = version::parse(candidate);
  if (!want || !have) return same_spelling();
  // The pin is the clause ==version; its own parse cannot fail once the version parsed.
  auto clause = specifier::parse("==" + want->str());
  return clause && clause->matches(*have);
}

bool wheel_matches(std::string_view filename, const file_filter& filter) {
  const auto tags = parse_wheel_tags(filename);
  if (!tags) return false;
  if (!filter.platforms.empty() && !platform_matches(*tags, filter.platforms)) return false;
  if (filter.python && !python_matches(*tags, *filter.python)) return false;
  return true;
}

file_choice choose_files(const project_page& page, const pin& p, const file_filter& filter) {
  file_choice out;
  std::vector<std::size_t> candidates;
  std::vector<std::string> versions;  // what the page has, for the message
  for (std::size_t i = 0; i < page.files.size(); ++i) {
    const auto& f = page.files[i];
    const dist_kind kind = kind_of(f.filename);
    if (kind == dist_kind::other) continue;
    const auto dist = parse_dist_filename(f.filename, p.name);
    if (!dist) continue;
    if (std::find(versions.begin(), versions.end(), dist->version) == versions.end()) {
      versions.push_back(dist->version);
    }
    if (version_matches(p, dist->version)) candidates.push_back(i);
  }
  if (candidates.empty()) {
    out.result = file_choice::outcome::no_such_version;
    out.message = p.str() + ": the index has no wheel or sdist of version " + p.version;
    if (versions.empty()) {
      out.message += " (it lists no files of " + p.name + ")";
    } else {
      // The newest come last on an index page; the last few are what a reader needs.
      constexpr std::size_t kShown = 12;
      out.message += " (versions: ";
      const std::size_t from = versions.size() > kShown ? versions.size() - kShown : 0;
      if (from > 0) out.message += "..., ";
      for (std::size_t i = from; i < versions.size(); ++i)
        out.message += (i == from ? "" : ", ") + versions[i];
      out.message += ")";
    }
    return out;
  }
  std::vector<std::size_t> kept;
  for (auto i : candidates) {
    if (!page.files[i].yanked) kept.push_back(i);
  }
  if (kept.empty()) {
    kept = candidates;
    out.yanked = true;
  }
  if (!p.hashes.empty()) {
    std::vector<std::size_t> allowed;
    for (auto i : kept) {
      if (hash_allowed(page.files[i], p)) allowed.push_back(i);
    }
    out.hash_skipped = kept.size() - allowed.size();
    if (allowed.empty()) {
      out.result = file_choice::outcome::no_allowed_hash;
      out.message = p.str() + ": none of the " + std::to_string(kept.size()) +
                    " files of the version has a hash its --hash options allow";
      return out;
    }
    kept = std::move(allowed);
  }
  if (filter.active()) {
    std::vector<std::size_t> wheels;
    std::vector<std::size_t> sdists;
    for (auto i : kept) {
      const auto& name = page.files[i].filename;
      if (kind_of(name) == dist_kind::sdist) {
        sdists.push_back(i);
      } else if (wheel_matches(name, filter)) {
        wheels.push_back(i);
      }
    }
    kept = wheels.empty() ? std::move(sdists) : std::move(wheels);
    if (kept.empty()) {
      out.result = file_choice::outcome::no_matching_file;
      out.message = p.str() + ": no wheel matches " + describe(filter) + " and there is no sdist";
      return out;
    }
  }
  out.files = std::move(kept);
  return out;
}

}  // namespace pantry::registry::pypi
