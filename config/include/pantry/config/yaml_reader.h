#pragma once

// The machinery that reads pantry's YAML files (the config, a pipeline's .pantry.yml) into typed
// values with messages a person can act on: loading one document safely, where each value is
// (file:line:col and key path), the problems collected so far, maps with known keys and "did you
// mean ...?" for unknown ones, typed scalars, and lists of maps (reader::read_list).
//
// A reader never stops at a problem: it records a complete message ("pantry.yaml:4:14:
// cache.max_size: \"50 GB\" is not a size; ...") and the caller goes on with the next key, so one
// run reports every problem of a file. A value with a problem is not stored: the caller keeps
// what it had.
//
// Everything here is pure: no file system, no clock. yaml-cpp's types appear in the interface,
// so users link yaml-cpp (pantry_config does so publicly).

#include "pantry/error.h"

#include <yaml-cpp/node/node.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::config::yaml {

// How values appear in messages: quoted, escaped, cut short, and described by kind ("is a
// list"), so that every message shows the offending value on one readable line.

// `s` made safe to print on one line: '"' and '\' escaped, newlines, tabs, other control
// characters and invalid UTF-8 escaped, text past 80 bytes cut with "...".
std::string printable(std::string_view s);

// printable(s) in double quotes: "\"50 GB\"".
std::string quote(std::string_view s);

// One character (a whole UTF-8 sequence, or one byte) for a message: 'x', or its escape in
// double quotes ("\x01") when it is a control character or not UTF-8. Requires !ch.empty().
std::string describe_char(std::string_view ch);

// "a, b, c".
std::string join(std::span<const std::string_view> items);

// "a map", "a list", "empty" or "a single value".
std::string kind_of(const YAML::Node& n);

// A node quoted as a short flow-style rendering ("{name: pypi, url: x}"), cut like quote(); safe
// on anchors that refer to themselves.
std::string describe(const YAML::Node& n);

// The keys of one map of a file: path "" is the top level, "server" the server: map,
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

// The one of `known` closest to `word` by edit distance, if it is close enough to be a likely
// typo of it (at most 2 edits, or a third of that key's length when more); the first of equally
// close ones. nullopt for a word over 64 bytes.
std::optional<std::string_view> nearest(std::string_view word,
                                        std::span<const std::string_view> known);

// What kind of file a text is, for messages about the text as a whole.
struct document_kind {
  std::string_view noun;  // "config": "too large for a config file", "a config is one document"
  errc code;              // the code of every error about such a file
  std::size_t max_bytes;  // a larger text is refused before it is parsed
};

// Loads `text` as exactly one YAML document, or an error (kind.code) of the form
// "source:line:col: (syntax): \"<the line>\" is not valid YAML: ...". Refuses, with messages
// naming the place: a text over kind.max_bytes, a NUL byte or invalid UTF-8 (yaml-cpp would
// guess another encoding), a second document, text after the end of the document. Never throws.
result<YAML::Node> load_document(std::string_view text, std::string_view source,
                                 const document_kind& kind);

// One `key: value` of a map, with the key path that names it in messages.
struct entry {
  // The key as written ("max_size"): a known key (plain ASCII) or, from for_each_name(), any
  // name, valid while key_node lives.
  std::string_view key;
  YAML::Node key_node;
  YAML::Node value;
  std::string path;  // "cache.max_size", "pypi.routes[2].pattern"; the key itself at the top level

  // Where a message about the value points: a missing value has no position of its own
  // (yaml-cpp puts it at the next token), so there it is the key's.
  YAML::Mark mark() const { return value.IsNull() ? key_node.Mark() : value.Mark(); }
};

// A key that every item of a list must have, and what the message about a missing one suggests
// writing after it: "add pattern: followed by <followed_by>".
struct required_key {
  std::string_view key;
  std::string_view followed_by;
};

// One item of a list being read by read_list().
struct list_item {
  YAML::Node node;
  std::string path;  // "pypi.routes[2]"
  std::size_t index = 0;
  // reader::problems() when the list started: an item can tell whether the list is clean so far.
  std::size_t problems_before_list = 0;
};

// The first item to use each value of a key that the items of a list must not share.
class unique_values {
 public:
  struct first_use {
    std::size_t index;
    int line;  // 1-based
  };
  // Remembers that item `index` uses `value` on line `line`, or, if an earlier item already did,
  // returns that one and remembers nothing.
  std::optional<first_use> add(const std::string& value, std::size_t index, int line);

 private:
  std::map<std::string, first_use, std::less<>> first_;
};

// How read_list() reads one list of maps into a std::vector<T>. Message parts follow what the
// reader puts before them: "<value> is a map" + not_a_list, "<item> is a list" + not_a_map.
template <class T>
struct list_rules {
  std::string_view not_a_list = {};  // ", expected a list of users, e.g. [...]"
  std::string_view not_a_map = {};   // ", expected a map with name and token, e.g. {...}"
  std::optional<std::string> if_empty = std::nullopt;  // the message for "[]", if not allowed
  std::span<const std::string_view> keys = {};         // the keys an item may have
  std::span<const required_key> required = {};
  // The key no two items may share a value of (empty: none), the field of T its value is read
  // into (left empty when the value is wrong), and the message for a repeat, which is reported
  // at the repeat's value.
  std::string_view unique_key = {};
  std::string T::*unique_field = nullptr;
  std::string (*repeated)(std::string_view value, std::string_view first_path,
                          int first_line) = nullptr;
};

class reader {
 public:
  // `source` names the text in messages (a path, "<embedded defaults>"); `maps` are the keys of
  // every map of the file, for suggestions (may be empty). Both must outlive the reader.
  reader(std::string_view source, std::span<const key_set> maps);

  // Records a problem at `m` about the value at `path` (or "(top level)"). Past 20 problems the
  // rest are only counted: they are usually consequences of the first ones.
  void fail(const YAML::Mark& m, std::string_view path, std::string message);
  // Records a problem with e's value, at its position.
  void fail(const entry& e, std::string message);

  // The messages, in the order recorded, each "source:line:col: path: message".
  const std::vector<std::string>& errors() const { return errors_; }
  // Problems past the limit, counted but not recorded.
  std::size_t dropped_errors() const { return dropped_errors_; }
  // All problems so far, recorded or not.
  std::size_t problems() const { return errors_.size() + dropped_errors_; }
  // The recorded messages one per line, then "source: N more errors not shown" if some were
  // only counted; "" when there were no problems. What a caller returns as its error's message.
  std::string report() const;

  // Remembers where the value at `path` was set, for the checks that run once the whole document
  // is read (section::check): they point at what this document wrote, or at nothing when the
  // value is a default. Setting a path again moves it.
  void note(std::string path, const YAML::Mark& m);
  // Where `path` was noted, or nullopt if this document did not set it.
  std::optional<YAML::Mark> noted(std::string_view path) const;

  using key_handler = std::function<void(const entry&)>;

  // Calls handle() for each key of `map` that is in `known`, in document order; reports keys that
  // are not scalars, unknown (with a suggestion) or repeated. `path` is the map's ("" for the top
  // level).
  void for_each_key(const YAML::Node& map, const std::string& path,
                    std::span<const std::string_view> known, const key_handler& handle);

  // for_each_key() over e's value if it is a map. An empty value (`cache:` with its keys
  // commented out) keeps the defaults; anything else is reported.
  void read_map(const entry& e, std::span<const std::string_view> known, const key_handler& handle);

  // Calls handle() for each key of `map` whatever its name, in document order: maps whose keys
  // are names the caller checks (job names, secret names). Reports keys that are not scalars or
  // are repeated. `path` is the map's; an entry's path is "path.<printable key>".
  void for_each_name(const YAML::Node& map, const std::string& path, const key_handler& handle);

  // for_each_name() over e's value if it is a map; an empty value is an empty map, anything else
  // is reported (`example` shows a good map, e.g. "{PYPI_TOKEN: /etc/pantry/pypi_token}").
  void read_named_map(const entry& e, std::string_view example, const key_handler& handle);

  // The text of a scalar value, or nullopt after reporting what it is instead; `expected` says
  // what to write ("a size, e.g. 50GiB").
  std::optional<std::string> as_scalar(const entry& e, std::string_view expected);
  // A scalar that must be non-empty UTF-8 text without control characters.
  std::optional<std::string> as_text(const entry& e, std::string_view expected);
  // A size in bytes (parse_size()); `example` is a good value ("50GiB").
  std::optional<std::uint64_t> read_size(const entry& e, std::string_view example);
  // A duration (parse_duration()).
  std::optional<std::chrono::seconds> read_duration(const entry& e);
  // A duration that must not be zero; `zero_means` says what zero would do ("would fail every
  // connection"), `example` is a good value ("10s").
  std::optional<std::chrono::seconds> read_positive_duration(const entry& e,
                                                             std::string_view zero_means,
                                                             std::string_view example);
  // true or false (also True/TRUE/False/FALSE). YAML 1.1's yes/no/on/off read differently from
  // one tool to the next, so they are refused rather than guessed.
  std::optional<bool> read_bool(const entry& e);
  // A whole number in [low, high]; `range` says which numbers to use, e.g. "use 1 to 1024".
  std::optional<unsigned> read_count(const entry& e, unsigned low, unsigned high,
                                     std::string_view range);

  // Reads e's value as a list of maps, each into a T: read_key(T&, const entry&) for each known
  // key of an item, then finish(T&, const list_item&) for checks over the whole item, then the
  // rules' required keys and unique key. Returns the whole list, or nullopt if anything in it
  // was wrong (reported): a list is replaced whole or not at all.
  template <class T, class ReadKey, class Finish>
  std::optional<std::vector<T>> read_list(const entry& e, const list_rules<T>& rules,
                                          ReadKey&& read_key, Finish&& finish);
  template <class T, class ReadKey>
  std::optional<std::vector<T>> read_list(const entry& e, const list_rules<T>& rules,
                                          ReadKey&& read_key) {
    return read_list(e, rules, read_key, [](T&, const list_item&) {});
  }

 private:
  // The untyped part of read_list(): checks that e's value is a list (and not empty, if it must
  // not be), and calls read_item() for each item that is a map.
  void for_each_item(const entry& e, std::string_view not_a_list, std::string_view not_a_map,
                     const std::optional<std::string>& if_empty,
                     const std::function<void(const list_item&)>& read_item);
  // Reports each of `required` that `item` does not have.
  void require_keys(const list_item& item, std::span<const required_key> required,
                    const std::vector<std::string_view>& present);

  std::string location(const YAML::Mark& m) const;

  std::string_view source_;
  std::span<const key_set> maps_;
  std::vector<std::string> errors_;
  std::size_t dropped_errors_ = 0;
  std::map<std::string, YAML::Mark, std::less<>> noted_;
};

template <class T, class ReadKey, class Finish>
std::optional<std::vector<T>> reader::read_list(const entry& e, const list_rules<T>& rules,
                                                ReadKey&& read_key, Finish&& finish) {
  const std::size_t problems_before = problems();
  std::vector<T> out;
  unique_values unique;
  for_each_item(e, rules.not_a_list, rules.not_a_map, rules.if_empty, [&](const list_item& item) {
    T value{};
    std::vector<std::string_view> present;
    YAML::Mark unique_mark = item.node.Mark();
    for_each_key(item.node, item.path, rules.keys, [&](const entry& f) {
      present.push_back(f.key);
      if (f.key == rules.unique_key) unique_mark = f.mark();
      read_key(value, f);
    });
    finish(value, item);
    require_keys(item, rules.required, present);
    if (rules.unique_field != nullptr && !(value.*rules.unique_field).empty()) {
      const std::string& v = value.*rules.unique_field;
      if (auto first = unique.add(v, item.index, unique_mark.line + 1)) {
        fail(unique_mark, item.path + "." + std::string(rules.unique_key),
             rules.repeated(v, e.path + "[" + std::to_string(first->index) + "]", first->line));
      }
    }
    out.push_back(std::move(value));
  });
  if (problems() != problems_before) return std::nullopt;
  return out;
}

}  // namespace pantry::config::yaml
