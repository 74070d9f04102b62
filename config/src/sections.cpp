// The list of sections (sections.def) and what is done with all of them at once.

#include "section.h"

#include "message.h"

#include <yaml-cpp/yaml.h>

#include <array>
#include <vector>

namespace pantry::config::detail {
namespace {

constexpr std::array kSections = {
#define PANTRY_CONFIG_SECTION(name) &name##_section,
#include "sections.def"
#undef PANTRY_CONFIG_SECTION
};

// Every top-level key, in section order.
const std::vector<const top_level_key*>& top_level_keys() {
  static const std::vector<const top_level_key*> keys = [] {
    std::vector<const top_level_key*> out;
    for (const section* s : kSections) {
      for (const top_level_key& k : s->keys)
        out.push_back(&k);
    }
    return out;
  }();
  return keys;
}

const std::vector<std::string_view>& top_level_names() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> out;
    for (const top_level_key* k : top_level_keys())
      out.push_back(k->name);
    return out;
  }();
  return names;
}

}  // namespace

std::span<const key_set> all_maps() {
  static const std::vector<key_set> maps = [] {
    std::vector<key_set> out = {{"", top_level_names()}};
    for (const section* s : kSections)
      out.insert(out.end(), s->maps.begin(), s->maps.end());
    return out;
  }();
  return maps;
}

void read_document(reader& r, const YAML::Node& root, config& c) {
  if (root.IsNull()) return;
  if (!root.IsMap()) {
    r.fail(root.Mark(), "(top level)",
           describe(root) + " is " + kind_of(root) +
               ", expected a map of settings; start with keys such as listen:, cache: or pypi:");
    return;
  }
  const auto& keys = top_level_keys();
  r.for_each_key(root, "", top_level_names(), [&](const entry& e) {
    for (const top_level_key* k : keys) {
      if (k->name == e.key) k->read(r, e, c);
    }
  });
  if (!r.errors().empty()) return;
  for (const section* s : kSections) {
    if (s->settle != nullptr) s->settle(c);
  }
  for (const section* s : kSections) {
    if (s->check != nullptr) s->check(r, c);
  }
}

void emit_document(YAML::Emitter& out, const config& c, secrets s) {
  for (const top_level_key* k : top_level_keys()) {
    out << YAML::Key << std::string(k->name) << YAML::Value;
    k->emit(out, c, s);
  }
}

}  // namespace pantry::config::detail
