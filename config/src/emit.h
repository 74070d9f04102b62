#pragma once

// Writing the config back as YAML (to_yaml, `pantry config show`): the helpers the sections
// share, and the secrets rule, which pairs what is written in place of a secret with its refusal
// when read back.

#include "pantry/config/config.h"
#include "reader.h"

#include <yaml-cpp/emitter.h>
#include <yaml-cpp/emittermanip.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::config::detail {

// Writes `key: value`.
template <class Value>
void emit_key(YAML::Emitter& out, std::string_view key, const Value& value) {
  out << YAML::Key << std::string(key) << YAML::Value << value;
}

// Writes `items` as a block list of maps, emit_item(out, item) writing the keys of each; an empty
// list as "[]", so that it reads back as a list.
template <class T, class EmitItem>
void emit_list(YAML::Emitter& out, const std::vector<T>& items, EmitItem&& emit_item) {
  if (items.empty()) {
    out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
    return;
  }
  out << YAML::BeginSeq;
  for (const T& item : items) {
    out << YAML::BeginMap;
    emit_item(out, item);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
}

// `value`, or kHiddenSecret when secrets are hidden.
std::string secret(const std::string& value, secrets s);

// Why a secret (`what`: "password", "token") cannot be `value`: it is the placeholder to_yaml()
// writes for hidden secrets, so the config was copied from `pantry config show`. nullopt if not.
std::optional<std::string> placeholder_problem(std::string_view value, std::string_view what);

// A token that grants access (oci.hosted.users, ci.tokens): at least 16 characters, not the
// placeholder. Reports a problem without echoing the value (it is a secret) and returns nullopt.
std::optional<std::string> read_token(reader& r, const entry& e, std::size_t min_chars = 16);

}  // namespace pantry::config::detail
