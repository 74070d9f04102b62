#pragma once

// How the config file is divided into sections, each read, checked and written by one file.
//
// A section is one or more top-level keys of the file (pypi:, oci:; the core section has listen:,
// data_dir:, server:, upstream: and cache:). Its file, config/src/<name>_section.cpp, defines
//
//   constinit const section <name>_section = {...};
//
// and sections.def lists it, one line, which is all it takes for parse() to read its keys, for
// its checks to run, for to_yaml() to write it, and for "did you mean ...?" to know its keys.
// Adding a section `jobs:`: its struct and a `jobs` field in pantry/config/config.h, the file
// jobs_section.cpp, and the line PANTRY_CONFIG_SECTION(jobs) in sections.def.

#include "reader.h"
#include "suggest.h"

#include "pantry/config/config.h"

#include <yaml-cpp/emitter.h>

#include <span>
#include <string_view>

namespace pantry::config::detail {

// One top-level key of the file.
struct top_level_key {
  std::string_view name;  // "pypi"
  // Lays e's value (the document's `pypi:`) over `c`, reporting problems to `r`.
  void (*read)(reader& r, const entry& e, config& c);
  // Writes the value of the key (not the key) for to_yaml().
  void (*emit)(YAML::Emitter& out, const config& c, secrets s);
};

struct section {
  // In the order to_yaml() writes them.
  std::span<const top_level_key> keys;
  // The keys of each map of the section ("pypi", "oci.hosted"; not of list items), for
  // suggestions when a key is misplaced; in the order suggestions try them.
  std::span<const key_set> maps = {};
  // Checks that need the whole config, such as a name that must refer to an item of a list the
  // document may or may not have set (r.noted() says which). Runs only after a document was read
  // without problems. May be null.
  void (*check)(reader& r, const config& c) = nullptr;
  // Puts values that depend on others into their one canonical form, so that to_yaml() and
  // parse() round-trip (the runner's places equal to the ones derived from data_dir become
  // unset). Runs after a document was read without problems, before the checks. May be null.
  void (*settle)(config& c) = nullptr;
};

#define PANTRY_CONFIG_SECTION(name) extern const section name##_section;
#include "sections.def"
#undef PANTRY_CONFIG_SECTION

// The keys of every map of the file, the top level ("") first, then each section's maps.
std::span<const key_set> all_maps();

// Reads a document's root node onto `c`: each top-level key by its section, then, if nothing was
// wrong, every section's settle and then every section's check.
void read_document(reader& r, const YAML::Node& root, config& c);

// Writes every section's keys, in section order, into the map `out` is in.
void emit_document(YAML::Emitter& out, const config& c, secrets s);

}  // namespace pantry::config::detail
