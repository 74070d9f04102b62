#pragma once

// "did you mean ...?": what an unknown key most likely should have been, from the keys every map
// of the config file accepts.

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace pantry::config::detail {

// The keys of one map of the config file: path "" is the top level, "server" the server: map,
// "oci.hosted" the map under oci:. Items of lists are not key sets: a key misplaced there is more
// likely a typo than a key of another section.
struct key_set {
  std::string_view path;
  std::span<const std::string_view> keys;
};

// The advice for an unknown `key` in the map at `path` whose keys are `known`, `maps` being every
// map of the file in order: "did you mean max_size?", "did you mean cache.max_size? (it belongs
// under cache:)", or "known keys here: ...". A key that other maps have exactly is taken as
// misplaced when `path` is one of `maps`, and as a typo of `known` first in a list item.
std::string suggest_key(std::string_view key, std::string_view path,
                        std::span<const std::string_view> known, std::span<const key_set> maps);

}  // namespace pantry::config::detail
