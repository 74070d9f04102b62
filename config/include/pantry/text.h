#pragma once

// Small text helpers every layer needs, written once: ASCII case folding and comparison,
// trimming, port numbers, PEP 503 project-name normalization, HTML escaping and byte counts for
// people. ASCII only on purpose: HTTP
// header names, media types, URL schemes and project names are ASCII by their specs, and a
// locale-dependent std::tolower would make a header match depend on the environment.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pantry {

// `s` with A-Z made a-z; every other byte kept.
std::string ascii_lower(std::string_view s);

// True iff `a` and `b` are equal ignoring ASCII case.
bool ascii_iequals(std::string_view a, std::string_view b) noexcept;

// One '/'-separated component of an OCI repository name, as the distribution spec's grammar has
// it: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* (the registry's /v2/ paths, the runner's and the
// builder's image references).
bool is_oci_name_component(std::string_view c) noexcept;

// `s` quoted for an error message: in double quotes, with '"' and '\\' escaped and control
// bytes as \xNN, cut after 80 bytes with "…" (what a user typed may hold anything).
std::string quote_for_message(std::string_view s);

// Space, tab, CR, LF and form feed (HTML's and HTTP's white space).
bool is_ascii_space(char c) noexcept;

// `s` without leading and trailing ASCII white space.
std::string_view trim_ascii_space(std::string_view s) noexcept;

// A port number written as 1 to 5 decimal digits with a value of at most 65535, or nullopt.
// 0 is returned as 0: callers for which 0 means "any free port" accept it, others refuse it.
std::optional<std::uint16_t> parse_port(std::string_view digits) noexcept;

// The PEP 503 normalized form of a project name: ASCII letters lowercased, every run of '-',
// '_' and '.' replaced by one '-'. Other bytes are kept as they are (is_valid_project_name says
// whether a name is worth normalizing at all).
std::string normalize_project_name(std::string_view name);

// True iff `name` equals normalize_project_name(name).
bool is_normalized_project_name(std::string_view name) noexcept;

// True iff `name` is a valid project name (PEP 508): ASCII letters, digits, '-', '_' and '.',
// starting and ending with a letter or digit. Such a name is safe in a URL path and a cache key.
bool is_valid_project_name(std::string_view name) noexcept;

// Appends `s` with &, <, >, " and ' escaped, fit for a quoted attribute value or text.
void append_html_escaped(std::string& out, std::string_view s);

// "512 B", "1.5 KiB", "48.3 MiB", … (binary units, one decimal above bytes).
std::string human_bytes(std::uint64_t n);

}  // namespace pantry
