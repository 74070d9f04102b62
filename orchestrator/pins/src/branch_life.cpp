// The life of a pin branch (branch_life.h): pure decisions over what git says about it.

#include "pantry/orchestrator/pins/branch_life.h"

#include "pantry/text.h"

#include <algorithm>

namespace pantry::orchestrator::pins {
namespace {

constexpr std::string_view kPrefix = "pantry/pins/";

std::string bot_identity() {
  return std::string(kBotName) + " <" + std::string(kBotEmail) + ">";
}

// `text` split at each `sep`; a trailing empty piece is kept.
std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = text.find(sep, start);
    out.push_back(text.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

}  // namespace

std::string upgrade_branch(std::string_view name, const registry::pypi::version& version) {
  return std::string(kPrefix) + std::string(name) + "-" + version.str();
}

std::string with_bot_trailer(std::string message, std::string_view branch) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
    message.pop_back();
  return message + "\n\n" + std::string(kBotTrailer) + ": " + std::string(branch) + "\n";
}

result<std::vector<branch_commit>> parse_commit_log(std::string_view log) {
  std::vector<branch_commit> out;
  for (std::string_view record : split(log, '\x1e')) {
    record = trim_ascii_space(record);
    if (record.empty()) continue;
    const auto fields = split(record, '\x1f');
    if (fields.size() != 4) {
      return error(
          errc::invalid_argument,
          "git log gave a commit record of " + std::to_string(fields.size()) +
              " fields, not 4 (id, author, committer, trailer): " + quote_for_message(record));
    }
    branch_commit c;
    c.id = std::string(fields[0]);
    c.author = std::string(fields[1]);
    c.committer = std::string(fields[2]);
    c.trailer = !trim_ascii_space(fields[3]).empty();
    out.push_back(std::move(c));
  }
  return out;
}

bool made_by_bot(const branch_commit& c) {
  const std::string bot = bot_identity();
  return c.author == bot && c.committer == bot && c.trailer;
}

std::vector<std::string> other_committers(const std::vector<branch_commit>& commits) {
  const std::string bot = bot_identity();
  std::vector<std::string> out;
  const auto add = [&](std::string who) {
    if (std::find(out.begin(), out.end(), who) == out.end()) out.push_back(std::move(who));
  };
  for (const auto& c : commits) {
    if (made_by_bot(c)) continue;
    if (c.committer != bot) {
      add(c.committer);
    } else if (c.author != bot) {
      add(c.author);
    } else {
      add(bot + " (without the " + std::string(kBotTrailer) + " trailer)");
    }
  }
  return out;
}

branch_verdict judge_existing(const existing_branch& branch, std::string_view base,
                              std::string_view new_tree) {
  const auto others = other_committers(branch.commits);
  if (!others.empty()) {
    std::string who;
    for (const auto& o : others)
      who += (who.empty() ? "" : ", ") + o;
    return {branch_verdict::fate::leave, "has commits by " + who};
  }
  if (branch.commits.size() != 1 || branch.tip_parent != base)
    return {branch_verdict::fate::rebuild, "its base branch moved"};
  if (branch.tip_tree != new_tree)
    return {branch_verdict::fate::rebuild, "its files differ from what bump writes now"};
  return {branch_verdict::fate::keep, ""};
}

std::vector<std::pair<std::string, std::string>> parse_heads(std::string_view ls_remote,
                                                             std::string_view prefix) {
  constexpr std::string_view kHeads = "refs/heads/";
  std::vector<std::pair<std::string, std::string>> out;
  for (std::string_view line : split(ls_remote, '\n')) {
    const std::size_t tab = line.find('\t');
    if (tab == std::string_view::npos) continue;
    std::string_view ref = trim_ascii_space(line.substr(tab + 1));
    if (!ref.starts_with(kHeads)) continue;
    ref.remove_prefix(kHeads.size());
    if (!ref.starts_with(prefix)) continue;
    out.emplace_back(std::string(ref), std::string(trim_ascii_space(line.substr(0, tab))));
  }
  return out;
}

std::vector<std::string> older_upgrades(const std::vector<std::string>& heads,
                                        std::string_view name,
                                        const registry::pypi::version& version) {
  const std::string start = std::string(kPrefix) + std::string(name) + "-";
  std::vector<std::string> out;
  for (const auto& head : heads) {
    if (!head.starts_with(start)) continue;
    const std::string_view written = std::string_view(head).substr(start.size());
    auto v = registry::pypi::version::parse(written);
    // Only the spelling bump writes: "a-b-1.0" read as project a's "b-1.0" does not parse, but
    // "a-2-3" (a-2's 3) would as a's 2.post3.
    if (!v || v->str() != written) continue;
    if (*v < version) out.push_back(head);
  }
  return out;
}

std::vector<std::string> other_group_branches(const std::vector<std::string>& heads,
                                              std::string_view group, std::string_view branch) {
  const std::string start = std::string(kPrefix) + "group/" + std::string(group) + "-";
  constexpr std::size_t kHashDigits = 12;
  std::vector<std::string> out;
  for (const auto& head : heads) {
    if (head == branch || !head.starts_with(start)) continue;
    const std::string_view hash = std::string_view(head).substr(start.size());
    const bool hex =
        hash.size() == kHashDigits && std::all_of(hash.begin(), hash.end(), [](char c) {
          return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        });
    if (hex) out.push_back(head);
  }
  return out;
}

}  // namespace pantry::orchestrator::pins
