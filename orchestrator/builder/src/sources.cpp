// COPY and ADD sources: globs, the walk of the source root, the listing the cache key hashes;
// --chown values and destinations. See copy.h.

#include "lexical.h"
#include "pantry/orchestrator/builder/copy.h"
#include "pantry/orchestrator/runner/user.h"
#include "root_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <set>
#include <utility>

namespace pantry::orchestrator::builder {
namespace {

using detail::decode_rune;
using detail::io_failure;
using detail::join_path;
using detail::quote;
using detail::split_path;

// ---- Go's path.Match ----------------------------------------------------------------------------

error bad_pattern(std::string_view pattern, std::string_view why) {
  return error(errc::invalid_argument, "bad pattern " + quote(pattern) + ": " + std::string(why));
}

// The next chunk of a pattern: the stars before it, then everything up to the next star outside a
// class (Go's scanChunk).
struct chunk {
  bool star = false;
  std::string_view text;
  std::string_view rest;
};

chunk scan_chunk(std::string_view pattern) {
  chunk out;
  while (!pattern.empty() && pattern.front() == '*') {
    pattern.remove_prefix(1);
    out.star = true;
  }
  bool in_range = false;
  std::size_t i = 0;
  for (; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      if (i + 1 < pattern.size()) ++i;
    } else if (c == '[') {
      in_range = true;
    } else if (c == ']') {
      in_range = false;
    } else if (c == '*' && !in_range) {
      break;
    }
  }
  out.text = pattern.substr(0, i);
  out.rest = pattern.substr(i);
  return out;
}

// One character of a class, with its escape (Go's getEsc).
result<char32_t> class_char(std::string_view& c, std::string_view pattern) {
  if (c.empty() || c.front() == '-' || c.front() == ']') {
    return bad_pattern(pattern, "a character class item is missing or starts with - or ]");
  }
  if (c.front() == '\\') {
    c.remove_prefix(1);
    if (c.empty()) return bad_pattern(pattern, "it ends with \\");
  }
  const auto r = decode_rune(c, 0);
  if (r.value == detail::kReplacementChar && r.length == 1) {
    return bad_pattern(pattern, "invalid UTF-8 in a character class");
  }
  c.remove_prefix(r.length);
  if (c.empty()) return bad_pattern(pattern, "a character class is not closed with ]");
  return r.value;
}

// Matches `c` against the start of `s` (Go's matchChunk): the rest of `s` when it matches. The
// whole chunk is always read, so that a bad class is an error even where `s` already failed.
result<std::optional<std::string_view>> match_chunk(std::string_view c, std::string_view s,
                                                    std::string_view pattern) {
  bool failed = false;
  while (!c.empty()) {
    if (!failed && s.empty()) failed = true;
    const char head = c.front();
    if (head == '[') {
      char32_t r = 0;
      if (!failed) {
        const auto decoded = decode_rune(s, 0);
        r = decoded.value;
        s.remove_prefix(decoded.length);
      }
      c.remove_prefix(1);
      bool negated = false;
      if (!c.empty() && c.front() == '^') {
        negated = true;
        c.remove_prefix(1);
      }
      bool match = false;
      int ranges = 0;
      for (;;) {
        if (!c.empty() && c.front() == ']' && ranges > 0) {
          c.remove_prefix(1);
          break;
        }
        auto lo = class_char(c, pattern);
        if (!lo) return lo.error();
        char32_t hi = *lo;
        if (c.front() == '-') {
          c.remove_prefix(1);
          auto h = class_char(c, pattern);
          if (!h) return h.error();
          hi = *h;
        }
        if (*lo <= r && r <= hi) match = true;
        ++ranges;
      }
      if (match == negated) failed = true;
    } else if (head == '?') {
      if (!failed) {
        if (s.front() == '/') failed = true;
        s.remove_prefix(decode_rune(s, 0).length);
      }
      c.remove_prefix(1);
    } else {
      if (head == '\\') {
        c.remove_prefix(1);
        if (c.empty()) return bad_pattern(pattern, "it ends with \\");
      }
      if (!failed) {
        if (c.front() != s.front()) failed = true;
        s.remove_prefix(1);
      }
      c.remove_prefix(1);
    }
  }
  if (failed) return std::optional<std::string_view>();
  return std::optional<std::string_view>(s);
}

// ---- the walk -----------------------------------------------------------------------------------

file_type type_of(mode_t mode) {
  if (S_ISDIR(mode)) return file_type::directory;
  if (S_ISLNK(mode)) return file_type::symlink;
  if (S_ISFIFO(mode)) return file_type::fifo;
  if (S_ISCHR(mode)) return file_type::char_device;
  if (S_ISBLK(mode)) return file_type::block_device;
  if (S_ISSOCK(mode)) return file_type::socket;
  return file_type::regular;
}

class finder {
 public:
  explicit finder(const source_root& root) : root_(root), disk_(detail::disk_view(root.dir)) {
    // What COPY sees: the disk without the files the ignore rules exclude.
    view_.lstat = [this](const std::string& rel) -> result<std::optional<struct stat>> {
      auto st = disk_.lstat(rel);
      if (!st || !*st) return st;
      if (!visible(rel, S_ISDIR((*st)->st_mode))) return std::optional<struct stat>();
      return st;
    };
    view_.read_link = disk_.read_link;
  }

  // Adds the items `pattern` names to `out`.
  std::optional<error> add(std::string_view pattern, std::vector<source_item>& out) {
    std::string cleaned = clean_path(pattern);
    if (cleaned.starts_with('/')) {
      // Docker reads an absolute source as relative to the root.
      cleaned = clean_path(std::string_view(cleaned).substr(1));
    }
    if (cleaned == ".." || cleaned.starts_with("../")) {
      return error(errc::invalid_argument,
                   quote(pattern) + " is outside " + root_.description +
                       ": COPY and ADD take files from there only (move the file into it, or "
                       "make the context a directory above)");
    }
    const std::vector<std::string> parts = split_path(cleaned);
    std::size_t first_glob = 0;
    while (first_glob < parts.size() && !has_glob(parts[first_glob]))
      ++first_glob;
    if (first_glob == parts.size()) {
      auto item = make_item(cleaned.empty() ? "." : cleaned);
      if (!item) return item.error();
      if (!*item) {
        return error(errc::not_found, "cannot find " + quote(pattern) + " in " + root_.description +
                                          (root_.ignore != nullptr && !root_.ignore->empty()
                                               ? " (or the ignore file excludes it)"
                                               : ""));
      }
      out.push_back(std::move(**item));
      return std::nullopt;
    }
    // A bad pattern is an error even where no name reaches it (matching "" reads it all).
    for (std::size_t i = first_glob; i < parts.size(); ++i) {
      if (auto m = match_glob(parts[i], ""); !m) return m.error();
    }
    std::string prefix;
    for (std::size_t i = 0; i < first_glob; ++i)
      prefix = join_path(prefix, parts[i]);
    auto base = detail::resolve_in_root(view_, prefix, true);
    if (!base) return base.error();
    auto st = view_.lstat(*base);
    if (!st) return st.error();
    if (!*st || !S_ISDIR((*st)->st_mode)) return std::nullopt;  // nothing to match in
    std::vector<std::string> matches;
    if (auto e = walk(*base, prefix, parts, first_glob, matches)) return e;
    for (const auto& named : matches) {
      auto item = make_item(named);
      if (!item) return item.error();
      if (!*item) {
        return error(errc::not_found, quote(named) + " (matched by " + quote(pattern) +
                                          ") is a link to nothing in " + root_.description);
      }
      out.push_back(std::move(**item));
    }
    return std::nullopt;
  }

 private:
  bool visible(const std::string& rel, bool is_dir) const {
    if (root_.ignore == nullptr || rel.empty() || !root_.ignore->excluded(rel)) return true;
    // An excluded directory that may hold an included file is still sent (docker sends it).
    return is_dir && root_.ignore->may_include_under(rel);
  }

  // The names in the directory `rel`, sorted (bytewise, as Go's Walk visits them).
  result<std::vector<std::string>> names_in(const std::string& rel) const {
    const std::filesystem::path p = rel.empty() ? root_.dir : root_.dir / rel;
    DIR* d = ::opendir(p.c_str());
    if (d == nullptr) return io_failure("cannot open the directory", p, errno);
    std::vector<std::string> out;
    int failure = 0;
    for (;;) {
      errno = 0;
      const dirent* e = ::readdir(d);
      if (e == nullptr) {
        failure = errno;
        break;
      }
      const std::string_view name = e->d_name;
      if (name != "." && name != "..") out.emplace_back(name);
    }
    ::closedir(d);
    if (failure != 0) return io_failure("cannot read the directory", p, failure);
    std::sort(out.begin(), out.end());
    return out;
  }

  // Matches parts[level…] below the directory `real` (named `named`), as BuildKit's
  // resolveWildcards: in lexical order; only real directories are entered; a match is not
  // searched below.
  std::optional<error> walk(const std::string& real, const std::string& named,
                            const std::vector<std::string>& parts, std::size_t level,
                            std::vector<std::string>& out) const {
    auto names = names_in(real);
    if (!names) return names.error();
    const bool last = level + 1 == parts.size();
    for (const auto& name : *names) {
      const std::string child = join_path(real, name);
      auto st = view_.lstat(child);
      if (!st) return st.error();
      if (!*st) continue;
      auto matched = match_glob(parts[level], name);
      if (!matched) return matched.error();
      if (!*matched) continue;
      if (last) {
        out.push_back(join_path(named, name));
      } else if (S_ISDIR((*st)->st_mode)) {
        if (auto e = walk(child, join_path(named, name), parts, level + 1, out)) return e;
      }
    }
    return std::nullopt;
  }

  // The item `named` (a source, links followed in the root), or nullopt when it is not there.
  result<std::optional<source_item>> make_item(const std::string& named) {
    auto real = detail::resolve_in_root(view_, named, true);
    if (!real) return real.error();
    auto st = view_.lstat(*real);
    if (!st) return st.error();
    if (!*st) return std::optional<source_item>();
    source_item item;
    item.named = named;
    const auto parts = split_path(named);
    item.name = parts.empty() ? std::string(".") : parts.back();
    if (S_ISSOCK((*st)->st_mode)) {
      return error(errc::invalid_argument, quote(named) + " in " + root_.description +
                                               " is a socket, which cannot be copied");
    }
    if (auto e = add_entry(item, "", *real, **st)) return *e;
    return std::optional<source_item>(std::move(item));
  }

  // Lists the file `real` (whose lstat is `st`) as `rel` below `item`, and what is below it.
  std::optional<error> add_entry(source_item& item, const std::string& rel, const std::string& real,
                                 const struct stat& st) {
    source_entry e;
    e.rel = rel;
    e.real = real.empty() ? root_.dir : root_.dir / real;
    source_file& f = e.file;
    f.path = join_path(item.named, rel);
    f.type = type_of(st.st_mode);
    f.mode = st.st_mode & 07777;
    if (root_.keep_owners) {
      f.uid = st.st_uid;
      f.gid = st.st_gid;
    }
    switch (f.type) {
      case file_type::regular: {
        auto d = hash_file(e.real);
        if (!d) return d.error();
        f.content = *d;
        break;
      }
      case file_type::symlink: {
        auto target = disk_.read_link(real);
        if (!target) return target.error();
        f.link_target = std::move(*target);
        break;
      }
      case file_type::char_device:
      case file_type::block_device:
        f.device_major = major(st.st_rdev);
        f.device_minor = minor(st.st_rdev);
        break;
      default:
        break;
    }
    item.entries.push_back(std::move(e));
    if (f.type != file_type::directory) return std::nullopt;
    auto names = names_in(real);
    if (!names) return names.error();
    for (const auto& name : *names) {
      const std::string child = join_path(real, name);
      auto child_st = view_.lstat(child);
      if (!child_st) return child_st.error();
      // Excluded, or a socket (tar cannot hold one; docker skips them too).
      if (!*child_st || S_ISSOCK((*child_st)->st_mode)) continue;
      if (auto err = add_entry(item, join_path(rel, name), child, **child_st)) return err;
    }
    return std::nullopt;
  }

  result<cache::digest> hash_file(const std::filesystem::path& p) {
    cache::hasher h;
    auto update = [&](std::span<const std::byte> block) -> std::optional<error> {
      h.update(block);
      return std::nullopt;
    };
    if (auto e = detail::read_blocks(p, buffer_, update)) return *e;
    return h.finish();
  }

  const source_root& root_;
  detail::root_view disk_;
  detail::root_view view_;
  std::vector<std::byte> buffer_;
};

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), detail::is_digit);
}

}  // namespace

result<bool> match_glob(std::string_view pattern, std::string_view name) {
  std::string_view p = pattern;
  while (!p.empty()) {
    const chunk ch = scan_chunk(p);
    p = ch.rest;
    if (ch.star && ch.text.empty()) return name.find('/') == std::string_view::npos;
    auto t = match_chunk(ch.text, name, pattern);
    if (t && *t && (t->value().empty() || !p.empty())) {
      name = **t;
      continue;
    }
    if (!t) return t.error();
    bool advanced = false;
    if (ch.star) {
      for (std::size_t i = 0; i < name.size() && name[i] != '/'; ++i) {
        auto u = match_chunk(ch.text, name.substr(i + 1), pattern);
        if (!u) return u.error();
        if (*u) {
          if (p.empty() && !u->value().empty()) continue;
          name = **u;
          advanced = true;
          break;
        }
      }
    }
    if (advanced) continue;
    // No match: the rest of the pattern must still be well formed.
    while (!p.empty()) {
      const chunk rest = scan_chunk(p);
      p = rest.rest;
      if (auto r = match_chunk(rest.text, "", pattern); !r) return r.error();
    }
    return false;
  }
  return name.empty();
}

bool has_glob(std::string_view pattern) noexcept {
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      ++i;
    } else if (c == '*' || c == '?' || c == '[') {
      return true;
    }
  }
  return false;
}

std::vector<source_file> copy_sources::listing() const {
  std::vector<source_file> out;
  std::set<std::string, std::less<>> seen;
  for (const auto& item : items) {
    for (const auto& e : item.entries) {
      if (seen.insert(e.file.path).second) out.push_back(e.file);
    }
  }
  return out;
}

result<copy_sources> find_sources(const source_root& root,
                                  const std::vector<std::string>& patterns) {
  copy_sources out;
  finder f(root);
  for (const auto& p : patterns) {
    if (auto e = f.add(p, out.items)) return *e;
  }
  if (out.items.empty()) {
    return error(errc::not_found,
                 "no source files were specified (nothing in " + root.description + " matches)");
  }
  return out;
}

bool chown_needs_names(std::string_view chown) {
  const auto colon = chown.find(':');
  const std::string_view user = chown.substr(0, colon);
  const std::string_view group =
      colon == std::string_view::npos ? std::string_view() : chown.substr(colon + 1);
  return (!user.empty() && !all_digits(user)) || (!group.empty() && !all_digits(group));
}

result<owner> resolve_chown(std::string_view chown, std::string_view passwd,
                            std::string_view group) {
  if (chown.find(':') == std::string_view::npos && all_digits(chown)) {
    // BuildKit: a numeric user alone is the group too.
    auto u = runner::resolve_user(chown, passwd, group);
    if (!u) return error(errc::invalid_argument, "--chown: " + u.error().message);
    return owner{u->uid, u->uid};
  }
  auto u = runner::resolve_user(chown, passwd, group);
  if (!u) return error(errc::invalid_argument, "--chown: " + u.error().message);
  return owner{u->uid, u->gid};
}

copy_destination make_destination(std::string_view dest, std::string_view working_dir) {
  copy_destination out;
  out.directory = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
  std::string absolute;
  if (dest.starts_with('/')) {
    absolute = dest;
  } else {
    absolute = working_dir.empty() ? std::string("/") : std::string(working_dir);
    absolute += '/';
    absolute += dest;
  }
  out.path = clean_path(absolute);
  return out;
}

}  // namespace pantry::orchestrator::builder
