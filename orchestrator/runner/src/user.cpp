#include "pantry/orchestrator/runner/user.h"

#include "strings.h"

#include <algorithm>
#include <charconv>
#include <optional>

namespace pantry::orchestrator::runner {
namespace {

// runc refuses ids above this (the kernel's ids are 32 bits, but -1 means "unchanged").
constexpr std::uint32_t kMaxId = 2147483647;

std::optional<std::uint32_t> parse_id(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (n > kMaxId) return std::nullopt;
  return static_cast<std::uint32_t>(n);
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

using detail::invalid;
using detail::quoted;
using detail::split;

template <class F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    if (f(line)) return;
  }
}

struct passwd_entry {
  std::string_view name;
  std::uint32_t uid;
  std::uint32_t gid;
  std::string_view home;
};

// The first entry for which `match` is true.
template <class Match>
std::optional<passwd_entry> find_passwd(std::string_view passwd, Match&& match) {
  std::optional<passwd_entry> found;
  for_each_line(passwd, [&](std::string_view line) {
    auto f = split(line, ':');
    if (f.size() < 7) return false;  // name:password:uid:gid:gecos:home:shell
    auto uid = parse_id(f[2]);
    auto gid = parse_id(f[3]);
    if (!uid || !gid || f[0].empty()) return false;
    passwd_entry e{f[0], *uid, *gid, f[5]};
    if (!match(e)) return false;
    found = e;
    return true;
  });
  return found;
}

error out_of_range(std::string_view user, std::string_view what) {
  return invalid("user " + quoted(user) + ": " + std::string(what) +
                 " out of range (0 to 2147483647)");
}

}  // namespace

result<exec_user> resolve_user(std::string_view user, std::string_view passwd,
                               std::string_view group) {
  std::string_view user_part = user;
  std::string_view group_part;
  bool group_given = false;
  if (auto colon = user.find(':'); colon != std::string_view::npos) {
    user_part = user.substr(0, colon);
    group_part = user.substr(colon + 1);
    group_given = true;
    if (group_part.empty()) {
      return invalid("user " + quoted(user) + ": empty group after ':'");
    }
  }
  if (user_part.empty()) {
    if (group_given) {
      return invalid("user " + quoted(user) + ": empty user before ':'");
    }
    user_part = "0";
  }

  exec_user out;
  std::optional<passwd_entry> entry;
  if (all_digits(user_part)) {
    auto uid = parse_id(user_part);
    if (!uid) return out_of_range(user, "uid");
    out.uid = *uid;
    entry = find_passwd(passwd, [&](const passwd_entry& e) { return e.uid == *uid; });
  } else {
    entry = find_passwd(passwd, [&](const passwd_entry& e) { return e.name == user_part; });
    if (!entry) {
      return invalid("user " + quoted(user_part) + " is not in the image's /etc/passwd");
    }
    out.uid = entry->uid;
  }
  if (entry) {
    out.gid = entry->gid;
    out.name = std::string(entry->name);
    if (!entry->home.empty()) out.home = std::string(entry->home);
  }

  if (group_given) {
    if (all_digits(group_part)) {
      auto gid = parse_id(group_part);
      if (!gid) return out_of_range(user, "gid");
      out.gid = *gid;
    } else {
      std::optional<std::uint32_t> gid;
      for_each_line(group, [&](std::string_view line) {
        auto f = split(line, ':');  // name:password:gid:member,member
        if (f.size() < 4 || f[0] != group_part) return false;
        gid = parse_id(f[2]);
        return gid.has_value();
      });
      if (!gid) {
        return invalid("group " + quoted(group_part) + " is not in the image's /etc/group");
      }
      out.gid = *gid;
    }
  } else if (entry) {
    for_each_line(group, [&](std::string_view line) {
      auto f = split(line, ':');
      if (f.size() < 4) return false;
      auto gid = parse_id(f[2]);
      if (!gid) return false;
      const auto members = split(f[3], ',');
      const bool member = std::find(members.begin(), members.end(), entry->name) != members.end();
      if (member && std::find(out.additional_gids.begin(), out.additional_gids.end(), *gid) ==
                        out.additional_gids.end()) {
        out.additional_gids.push_back(*gid);
      }
      return false;
    });
  }
  return out;
}

}  // namespace pantry::orchestrator::runner
