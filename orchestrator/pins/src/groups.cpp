// Grouping rules (groups.h): which group an upgrade is in, the group's branch, its edits and its
// commit message.

#include "pantry/orchestrator/pins/groups.h"

#include "pantry/cache/digest.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace pantry::orchestrator::pins {
namespace {

// Every pin `plan` sets: its change, co-upgrades and added pins.
std::vector<const pin_change*> pins_set(const pin_plan& plan) {
  std::vector<const pin_change*> all;
  if (plan.change) all.push_back(&*plan.change);
  for (const auto& c : plan.co_upgrades)
    all.push_back(&c);
  for (const auto& c : plan.added)
    all.push_back(&c);
  return all;
}

// The index in `now` of the requirement at `index` of `was` (an earlier state of the same
// document): the same name at the same occurrence, since edits only change versions and add
// names the file did not have.
std::optional<std::size_t> same_requirement(const requirements_file& was,
                                            const requirements_file& now, std::size_t index) {
  if (index >= was.requirements().size()) return std::nullopt;
  const requirement_entry& entry = was.requirements()[index];
  const auto before = was.find(entry.name);
  const auto it = std::find(before.begin(), before.end(), &entry);
  const auto after = now.find(entry.name);
  const auto k = static_cast<std::size_t>(it - before.begin());
  if (it == before.end() || k >= after.size()) return std::nullopt;
  return static_cast<std::size_t>(after[k] - now.requirements().data());
}

}  // namespace

const config::pins_group* group_of(const std::vector<config::pins_group>& groups,
                                   std::string_view name) {
  for (const auto& g : groups) {
    if (config::glob_match(g.match, name)) return &g;
  }
  return nullptr;
}

std::string group_branch(std::string_view group, const std::vector<const pin_plan*>& plans) {
  std::set<std::string> lines;
  for (const auto* plan : plans) {
    for (const auto* c : pins_set(*plan))
      lines.insert(c->name + "==" + c->new_version.str() + "\n");
  }
  std::string joined;
  for (const auto& l : lines)
    joined += l;
  return "pantry/pins/group/" + std::string(group) + "-" +
         cache::digest::of(joined).hex().substr(0, 12);
}

group_edit apply_group(const std::vector<grouped_upgrade>& upgrades) {
  group_edit out;
  std::map<std::string, std::map<std::string, std::string>> set_in;  // file -> name -> version
  for (std::size_t i = 0; i < upgrades.size(); ++i) {
    const grouped_upgrade& u = upgrades[i];
    auto file = std::find_if(out.files.begin(), out.files.end(),
                             [&](const auto& f) { return f.first == u.file; });
    if (file == out.files.end()) {
      out.files.emplace_back(u.file, u.doc);
      file = std::prev(out.files.end());
    }
    requirements_file& doc = file->second;
    auto& set = set_in[u.file];
    std::string conflict;
    for (const auto* c : pins_set(u.plan)) {
      const auto s = set.find(c->name);
      if (s != set.end() && s->second != c->new_version.str() && conflict.empty())
        conflict = "it sets " + c->name + " " + c->new_version.str() + ", another upgrade of " +
                   "the group " + s->second;
    }
    if (!u.plan.change) conflict = "it is not an upgrade";
    if (!conflict.empty()) {
      out.left_out.emplace_back(i, std::move(conflict));
      continue;
    }
    // The plan's indexes are into the file as read; earlier upgrades may have added lines.
    pin_plan plan = u.plan;
    bool found = true;
    const auto remap = [&](std::optional<std::size_t>& index) {
      if (!index) return;
      index = same_requirement(u.doc, doc, *index);
      found = found && index.has_value();
    };
    remap(plan.change->index);
    for (auto& c : plan.co_upgrades)
      remap(c.index);
    // A pin an earlier upgrade of the group added is in the file at that version now.
    std::erase_if(plan.added, [&](const pin_change& c) { return set.contains(c.name); });
    if (!found) {
      out.left_out.emplace_back(i, "its requirement is not in " + u.file + " as edited (a bug)");
      continue;
    }
    if (auto r = apply(doc, plan); !r) {
      out.left_out.emplace_back(i, r.error().message);
      continue;
    }
    for (const auto* c : pins_set(u.plan))
      set[c->name] = c->new_version.str();
    out.applied.push_back(i);
  }
  return out;
}

std::string group_summary(std::string_view group, const std::vector<const pin_plan*>& plans) {
  std::string s = "group " + std::string(group) + ":";
  for (std::size_t i = 0; i < plans.size(); ++i)
    s += (i == 0 ? " " : "; ") + summary(*plans[i]);
  return s;
}

std::string describe(const pin_plan& plan) {
  std::string m;
  for (const auto& r : plan.reasons)
    m += r + "\n";
  if (plan.change && plan.change->upload_time)
    m += "\nUploaded: " + *plan.change->upload_time + "\n";
  m += "Pinned version yanked: ";
  m += plan.old_yanked ? "yes" + (plan.old_yank_reason.empty() ? std::string()
                                                               : " (" + plan.old_yank_reason + ")")
                       : std::string("no");
  m += "\n";
  return m;
}

std::string group_commit_message(
    std::string_view group, const std::vector<std::pair<std::string, const pin_plan*>>& plans) {
  std::vector<const pin_plan*> only;
  for (const auto& [file, plan] : plans)
    only.push_back(plan);
  std::string m = "pins: " + group_summary(group, only) + "\n";
  for (const auto& [file, plan] : plans)
    m += "\n" + summary(*plan) + " (" + file + "):\n" + describe(*plan);
  return m;
}

}  // namespace pantry::orchestrator::pins
