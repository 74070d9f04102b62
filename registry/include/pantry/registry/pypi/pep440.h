#pragma once

// PEP 440 versions and version specifiers: parsing with the PEP's normalization, the canonical
// spelling, the PEP's total order, and specifier sets with its matching rules (prefix matching,
// zero padding, the exclusive ordered comparisons, the pre-release acceptance rule). The one PEP
// 440 implementation of pantry: the requirements reader of `pantry cache warm` and the pin bot
// both use it.
//
// Pure code: functions from text to values; nothing here touches the disk, the network or a
// clock. Numbers are kept as digit strings, so no version, however long its numbers, overflows.
// Thread-safe: values are immutable after parsing.

#include "pantry/error.h"

#include <compare>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::registry::pypi {

// A PEP 440 version, parsed and normalized.
class version {
 public:
  // The kind of pre-release, in the PEP's order (a < b < rc).
  enum class pre_kind { alpha, beta, rc };

  // Parses `text` the way the PEP's normalization section reads a version: case-insensitive,
  // leading and trailing white space and a leading `v` ignored, `-`, `_` and `.` accepted as
  // separators, `alpha`/`beta`/`c`/`pre`/`preview` as a/b/rc/rc/rc, `rev`/`r` and `-N` as post
  // releases, implicit numbers (`1.0a` is 1.0a0, `1.0.post` 1.0.post0, `1.0.dev` 1.0.dev0), local
  // segments separated by `-`, `_` or `.`. Errors (invalid_argument) quote the text and say what
  // a version looks like.
  static result<version> parse(std::string_view text);

  // The canonical spelling: "1!2.0rc1.post2.dev3+ubuntu.1". Parsing it gives an equal version
  // with the same spelling. Trailing zeros of the release stay ("1.0.0").
  std::string str() const;
  // str() without the local label: "1.0+cpu" -> "1.0".
  std::string public_str() const;
  // The epoch and release only: "1!2.0rc1.post2+x" -> "1!2.0".
  std::string base_str() const;

  // The epoch as a decimal string without leading zeros ("0" when none was written).
  const std::string& epoch() const noexcept { return epoch_; }
  // The release segments as decimal strings without leading zeros; never empty.
  const std::vector<std::string>& release() const noexcept { return release_; }
  // The pre-release kind and number, if any.
  std::optional<pre_kind> pre() const noexcept { return pre_; }
  const std::string& pre_number() const noexcept { return pre_number_; }
  // The post-release number, if any.
  const std::optional<std::string>& post() const noexcept { return post_; }
  // The development release number, if any.
  const std::optional<std::string>& dev() const noexcept { return dev_; }
  // The local label's segments, lowercased, numeric ones without leading zeros; empty if none.
  const std::vector<std::string>& local() const noexcept { return local_; }

  // True iff this is a pre-release in the PEP's sense: it has a pre-release or a development
  // release segment (1.0a1, 1.0.dev1, 1.0.post1.dev1).
  bool is_prerelease() const noexcept { return pre_.has_value() || dev_.has_value(); }
  bool is_postrelease() const noexcept { return post_.has_value(); }
  bool is_devrelease() const noexcept { return dev_.has_value(); }
  bool has_local() const noexcept { return !local_.empty(); }

  // This version without its local label.
  version public_version() const;
  // The epoch and release of this version only (1.0rc1.post1 -> 1.0).
  version base_version() const;

  // The PEP's total order: epoch, then the release compared as if padded with zeros (1.0 ==
  // 1.0.0), then 1.0.dev0 < 1.0a0.dev0 < 1.0a0 < 1.0a0.post0.dev0 < 1.0a0.post0 < 1.0 <
  // 1.0+local < 1.0.post0.dev0 < 1.0.post0; local labels compare segment by segment, numeric
  // segments as numbers and above alphanumeric ones, which compare as strings, and a label that
  // is a prefix of another sorts first. Equality is this order's: 1.0 == 1.0.0, 1.0 != 1.0+x.
  friend std::strong_ordering operator<=>(const version& a, const version& b);
  friend bool operator==(const version& a, const version& b);

 private:
  std::string epoch_ = "0";
  std::vector<std::string> release_;
  std::optional<pre_kind> pre_;
  std::string pre_number_;
  std::optional<std::string> post_;
  std::optional<std::string> dev_;
  std::vector<std::string> local_;
};

// One clause of a specifier set: an operator and a version.
struct specifier {
  enum class op {
    compatible,       // ~=V: >=V and ==P.* where P is V's release without its last segment
    equal,            // ==V, or ==V.* (prefix match when `wildcard`)
    not_equal,        // !=V, or !=V.*
    less_equal,       // <=V
    greater_equal,    // >=V
    less,             // <V, which excludes pre-releases of V unless V is one
    greater,          // >V, which excludes post-releases of V unless V is one, and V+local
    arbitrary_equal,  // ===V: the candidate's spelling equals V's, ignoring case
  };

  op operation = op::equal;
  // The version; for arbitrary_equal, the version the clause names when it is a PEP 440 version
  // (`text` is what is compared).
  version target;
  bool wildcard = false;  // `==V.*` / `!=V.*`
  std::string text;       // the version as written (trimmed), without the `.*`

  // Parses one clause: an operator, optional white space, a version. The version of `==` and
  // `!=` may end in `.*` (not after a dev or local segment); `~=` needs two or more release
  // segments; only `==`, `!=` and `===` take a local label; `===` takes any text without white
  // space. Errors (invalid_argument) quote the clause and say what is wrong.
  static result<specifier> parse(std::string_view text);

  // True iff `candidate` satisfies this clause, with the PEP's rules and without the pre-release
  // acceptance rule (see specifier_set::contains): a local label of the candidate is ignored
  // unless the clause names one (==1.0 takes 1.0+cpu; ==1.0+cpu takes only that).
  bool matches(const version& candidate) const;
  // As matches(version), for a candidate that may not be a PEP 440 version: such a candidate
  // satisfies only `===` with its spelling, or the same spelling for `==` (ignoring case).
  bool matches(std::string_view candidate) const;

  // True iff the clause itself names a pre-release with ==, ===, >=, <= or ~=, which makes a
  // set holding it accept pre-releases (PEP 440: "explicitly requested by the user").
  bool names_prerelease() const;

  // "~=1.4.5", "==1.1.*", "!=2.0", "===foobar" (canonical version spelling except for ===).
  std::string str() const;
};

// Whether a match may be a pre-release (the PEP's acceptance rule; see specifier_set).
enum class prereleases {
  by_specifier,  // only if a clause names one (specifier::names_prerelease)
  allow,         // always (the user asked for them, or one is already pinned)
  deny,          // never
};

// A comma-separated set of clauses; a version matches the set iff it matches every clause.
class specifier_set {
 public:
  // Parses "", ">=1.0, <2,!=1.5.*" (white space anywhere around the commas and the operators).
  // An empty text is the set that matches every version. Errors quote the bad clause.
  static result<specifier_set> parse(std::string_view text);

  // True iff `candidate` matches every clause and, when it is a pre-release, `policy` accepts it.
  bool contains(const version& candidate, prereleases policy = prereleases::by_specifier) const;

  // The indexes into `candidates` of the versions the set takes, as the PEP's acceptance rule
  // has a resolver do it: with by_specifier, pre-releases only when a clause names one or when
  // no final or post release matches (then every matching pre-release is taken). Order kept.
  std::vector<std::size_t> filter(std::span<const version> candidates,
                                  prereleases policy = prereleases::by_specifier) const;

  const std::vector<specifier>& clauses() const noexcept { return clauses_; }
  bool empty() const noexcept { return clauses_.empty(); }
  // True iff a clause names a pre-release.
  bool names_prerelease() const;

  // The clauses' str(), joined by ","; "" for the empty set.
  std::string str() const;

 private:
  std::vector<specifier> clauses_;
};

}  // namespace pantry::registry::pypi
