#include "suggest.h"

#include "message.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace pantry::config::yaml {
namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      const std::size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::optional<std::string_view> nearest(std::string_view key,
                                        std::span<const std::string_view> known) {
  if (key.size() > 64) return std::nullopt;
  std::optional<std::string_view> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (std::string_view k : known) {
    const std::size_t d = edit_distance(key, k);
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  if (!best || best_distance > std::max<std::size_t>(2, best->size() / 3)) return std::nullopt;
  return best;
}

namespace {

// "did you mean server.idle_timeout or upstream.idle_timeout? (it belongs under server: or
// upstream:)" for a key that maps other than `path` have, or nullopt.
std::optional<std::string> exactly_elsewhere(std::string_view key, std::string_view path,
                                             std::span<const key_set> maps) {
  std::string keys;
  std::string places;
  for (const auto& [section, section_keys] : maps) {
    if (section == path) continue;
    if (std::find(section_keys.begin(), section_keys.end(), key) == section_keys.end()) continue;
    const bool first = keys.empty();
    keys += (first ? "" : " or ") + (section.empty() ? "" : std::string(section) + ".") +
            std::string(key);
    places += (first ? "" : " or ") + (section.empty()
                                           ? std::string("at the top level")
                                           : (first ? "under " : "") + std::string(section) + ":");
  }
  if (keys.empty()) return std::nullopt;
  return "did you mean " + keys + "? (it belongs " + places + ")";
}

}  // namespace

// In a section, a key that is exactly a key of other sections is most likely misplaced
// (`header_timeout` under upstream: and server:, `upstreams` at the top level); in a list entry
// it is more likely a typo of the entry's own keys (`upstreams` in a route).
std::string suggest_key(std::string_view key, std::string_view path,
                        std::span<const std::string_view> known, std::span<const key_set> maps) {
  const bool in_section =
      std::any_of(maps.begin(), maps.end(), [&](const key_set& s) { return s.path == path; });
  if (in_section) {
    if (auto elsewhere = exactly_elsewhere(key, path, maps)) return *elsewhere;
  }
  if (auto near = nearest(key, known)) return "did you mean " + std::string(*near) + "?";
  if (auto elsewhere = exactly_elsewhere(key, path, maps)) return *elsewhere;
  for (const auto& [section, keys] : maps) {
    if (section == path) continue;
    if (auto near = nearest(key, keys)) {
      return "did you mean " + (section.empty() ? "" : std::string(section) + ".") +
             std::string(*near) + "? (it belongs " +
             (section.empty() ? std::string("at the top level")
                              : "under " + std::string(section) + ":") +
             ")";
    }
  }
  return "known keys here: " + join(known);
}

}  // namespace pantry::config::yaml
