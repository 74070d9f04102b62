#include "pantry/registry/pypi/pep440.h"

#include "pantry/text.h"

#include <algorithm>
#include <array>
#include <utility>

namespace pantry::registry::pypi {
namespace {

constexpr std::string_view kVersionShape =
    "a PEP 440 version looks like [N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local], e.g. 1.4.2, "
    "2.0rc1, 1!3.0.post1";

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

bool is_alnum(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_separator(char c) noexcept {
  return c == '-' || c == '_' || c == '.';
}

std::string strip_zeros(std::string_view digits) {
  while (digits.size() > 1 && digits.front() == '0')
    digits.remove_prefix(1);
  return std::string(digits);
}

// Decimal digit strings without leading zeros compare by length first.
std::strong_ordering compare_numbers(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return a.size() <=> b.size();
  return a.compare(b) <=> 0;
}

// The PEP's grammar, read left to right. Every optional part that its regular expression could
// match in more than one way is read the one way that leaves a valid rest, so this accepts
// exactly what the PEP's expression accepts: a separator after a label is always taken, since
// what may follow a label never needs to start with one that a label's own separator could not
// give (`1.0a.post1` reads as `1.0a` `.` `post1`, the same as `1.0a` `.post1`).
class version_reader {
 public:
  explicit version_reader(std::string_view s) : s_(s) {}

  struct parts {
    std::string epoch = "0";
    std::vector<std::string> release;
    std::optional<version::pre_kind> pre;
    std::string pre_number;
    std::optional<std::string> post;
    std::optional<std::string> dev;
    std::vector<std::string> local;
  };

  std::optional<parts> read() {
    parts v;
    if (peek() == 'v' || peek() == 'V') ++pos_;
    auto first = digits();
    if (first.empty()) return std::nullopt;
    if (peek() == '!') {
      ++pos_;
      v.epoch = strip_zeros(first);
      first = digits();
      if (first.empty()) return std::nullopt;
    }
    v.release.push_back(strip_zeros(first));
    while (peek() == '.' && is_digit(peek(1))) {
      ++pos_;
      v.release.push_back(strip_zeros(digits()));
    }
    // In the order the PEP's alternation tries them: the longer spelling first where one
    // begins another ("alpha" before "a", "preview" before "pre").
    static constexpr std::array<std::pair<std::string_view, version::pre_kind>, 8> kPre = {{
        {"alpha", version::pre_kind::alpha},
        {"a", version::pre_kind::alpha},
        {"beta", version::pre_kind::beta},
        {"b", version::pre_kind::beta},
        {"preview", version::pre_kind::rc},
        {"pre", version::pre_kind::rc},
        {"c", version::pre_kind::rc},
        {"rc", version::pre_kind::rc},
    }};
    if (auto kind = labelled(kPre)) {
      v.pre = *kind;
      v.pre_number = number_after_label();
    }
    static constexpr std::array<std::pair<std::string_view, int>, 3> kPost = {{
        {"post", 0},
        {"rev", 0},
        {"r", 0},
    }};
    if (peek() == '-' && is_digit(peek(1))) {
      ++pos_;
      v.post = strip_zeros(digits());
    } else if (labelled(kPost)) {
      v.post = number_after_label();
    }
    static constexpr std::array<std::pair<std::string_view, int>, 1> kDev = {{{"dev", 0}}};
    if (labelled(kDev)) v.dev = number_after_label();
    if (peek() == '+') {
      ++pos_;
      for (;;) {
        const std::size_t start = pos_;
        while (is_alnum(peek()))
          ++pos_;
        if (pos_ == start) return std::nullopt;
        std::string segment = ascii_lower(s_.substr(start, pos_ - start));
        const bool numeric = std::all_of(segment.begin(), segment.end(), is_digit);
        v.local.push_back(numeric ? strip_zeros(segment) : std::move(segment));
        if (!is_separator(peek())) break;
        ++pos_;
      }
    }
    if (pos_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  char peek(std::size_t ahead = 0) const noexcept {
    return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0';
  }

  std::string_view digits() {
    const std::size_t start = pos_;
    while (is_digit(peek()))
      ++pos_;
    return s_.substr(start, pos_ - start);
  }

  // An optional separator and one of `labels` (case-insensitive): returns the label's value and
  // moves past it, or stays where it was.
  template <class T, std::size_t N>
  std::optional<T> labelled(const std::array<std::pair<std::string_view, T>, N>& labels) {
    const std::size_t at = is_separator(peek()) ? pos_ + 1 : pos_;
    for (const auto& [spelling, value] : labels) {
      if (s_.size() - std::min(at, s_.size()) >= spelling.size() &&
          ascii_iequals(s_.substr(at, spelling.size()), spelling)) {
        pos_ = at + spelling.size();
        return value;
      }
    }
    return std::nullopt;
  }

  // The optional separator and number after a label; "0" when no number is written.
  std::string number_after_label() {
    if (is_separator(peek())) ++pos_;
    const auto n = digits();
    return n.empty() ? std::string("0") : strip_zeros(n);
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

std::string_view pre_label(version::pre_kind k) noexcept {
  switch (k) {
    case version::pre_kind::alpha:
      return "a";
    case version::pre_kind::beta:
      return "b";
    case version::pre_kind::rc:
      return "rc";
  }
  return "";
}

// The release compared as if the shorter one were padded with zeros.
std::strong_ordering compare_release(const std::vector<std::string>& a,
                                     const std::vector<std::string>& b) noexcept {
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const std::string_view x = i < a.size() ? std::string_view(a[i]) : "0";
    const std::string_view y = i < b.size() ? std::string_view(b[i]) : "0";
    if (auto c = compare_numbers(x, y); c != 0) return c;
  }
  return std::strong_ordering::equal;
}

// Where the pre-release part puts a version among those of the same release: a development
// release of a final release (1.0.dev0) below every pre-release, a version without a
// pre-release (final or post) above all of them.
int pre_rank(const version& v) noexcept {
  if (!v.pre()) return !v.post() && v.dev() ? 0 : 4;
  return 1 + static_cast<int>(*v.pre());
}

std::strong_ordering compare_local(const std::vector<std::string>& a,
                                   const std::vector<std::string>& b) noexcept {
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const bool an = std::all_of(a[i].begin(), a[i].end(), is_digit);
    const bool bn = std::all_of(b[i].begin(), b[i].end(), is_digit);
    if (an != bn) return an ? std::strong_ordering::greater : std::strong_ordering::less;
    const auto c = an ? compare_numbers(a[i], b[i]) : a[i].compare(b[i]) <=> 0;
    if (c != 0) return c;
  }
  return a.size() <=> b.size();
}

// The pieces a prefix match (==V.*) compares, as the PEP's "same prefix" reads a version: the
// epoch, each release segment, then the pre-release, post-release and development parts as one
// piece each ("1.1a1.post2" -> 0, 1, 1, a1, post2).
std::vector<std::string> prefix_pieces(const version& v, std::size_t pad_release_to,
                                       bool with_suffixes = true) {
  std::vector<std::string> out;
  out.push_back(v.epoch());
  out.insert(out.end(), v.release().begin(), v.release().end());
  for (std::size_t i = v.release().size(); i < pad_release_to; ++i)
    out.emplace_back("0");
  if (!with_suffixes) return out;
  if (v.pre()) out.push_back(std::string(pre_label(*v.pre())) + v.pre_number());
  if (v.post()) out.push_back("post" + *v.post());
  if (v.dev()) out.push_back("dev" + *v.dev());
  return out;
}

bool starts_with(const std::vector<std::string>& have, const std::vector<std::string>& want) {
  return have.size() >= want.size() && std::equal(want.begin(), want.end(), have.begin());
}

bool prefix_matches(const version& candidate, const version& prefix) {
  return starts_with(prefix_pieces(candidate, prefix.release().size()), prefix_pieces(prefix, 0));
}

// ~=V's prefix: V's epoch and release without its last segment (its pre, post and dev parts
// dropped), so ~=1.4.5a4 takes the 1.4 series.
bool compatible_prefix_matches(const version& candidate, const version& target) {
  auto want = prefix_pieces(target, 0, false);
  want.pop_back();
  return starts_with(prefix_pieces(candidate, target.release().size() - 1), want);
}

constexpr std::array<std::pair<std::string_view, specifier::op>, 8> kOperators = {{
    {"===", specifier::op::arbitrary_equal},
    {"~=", specifier::op::compatible},
    {"==", specifier::op::equal},
    {"!=", specifier::op::not_equal},
    {"<=", specifier::op::less_equal},
    {">=", specifier::op::greater_equal},
    {"<", specifier::op::less},
    {">", specifier::op::greater},
}};

std::string_view operator_text(specifier::op o) noexcept {
  for (const auto& [text, op] : kOperators) {
    if (op == o) return text;
  }
  return "";
}

}  // namespace

// ---- version ------------------------------------------------------------------------------------

result<version> version::parse(std::string_view text) {
  auto parts = version_reader(trim_ascii_space(text)).read();
  if (!parts) {
    return error(errc::invalid_argument, quote_for_message(text) + " is not a PEP 440 version: " +
                                             std::string(kVersionShape));
  }
  version v;
  v.epoch_ = std::move(parts->epoch);
  v.release_ = std::move(parts->release);
  v.pre_ = parts->pre;
  v.pre_number_ = std::move(parts->pre_number);
  v.post_ = std::move(parts->post);
  v.dev_ = std::move(parts->dev);
  v.local_ = std::move(parts->local);
  return v;
}

std::string version::base_str() const {
  std::string out;
  if (epoch_ != "0") out += epoch_ + "!";
  for (std::size_t i = 0; i < release_.size(); ++i) {
    if (i > 0) out += '.';
    out += release_[i];
  }
  return out;
}

std::string version::public_str() const {
  std::string out = base_str();
  if (pre_) out += std::string(pre_label(*pre_)) + pre_number_;
  if (post_) out += ".post" + *post_;
  if (dev_) out += ".dev" + *dev_;
  return out;
}

std::string version::str() const {
  std::string out = public_str();
  for (std::size_t i = 0; i < local_.size(); ++i) {
    out += i == 0 ? '+' : '.';
    out += local_[i];
  }
  return out;
}

version version::public_version() const {
  version v = *this;
  v.local_.clear();
  return v;
}

version version::base_version() const {
  version v;
  v.epoch_ = epoch_;
  v.release_ = release_;
  return v;
}

std::strong_ordering operator<=>(const version& a, const version& b) {
  if (auto c = compare_numbers(a.epoch_, b.epoch_); c != 0) return c;
  if (auto c = compare_release(a.release_, b.release_); c != 0) return c;
  if (auto c = pre_rank(a) <=> pre_rank(b); c != 0) return c;
  if (a.pre_ && b.pre_) {
    if (auto c = compare_numbers(a.pre_number_, b.pre_number_); c != 0) return c;
  }
  // No post release sorts below any post release.
  if (a.post_.has_value() != b.post_.has_value())
    return a.post_.has_value() <=> b.post_.has_value();
  if (a.post_) {
    if (auto c = compare_numbers(*a.post_, *b.post_); c != 0) return c;
  }
  // No development release sorts above any development release.
  if (a.dev_.has_value() != b.dev_.has_value()) return b.dev_.has_value() <=> a.dev_.has_value();
  if (a.dev_) {
    if (auto c = compare_numbers(*a.dev_, *b.dev_); c != 0) return c;
  }
  return compare_local(a.local_, b.local_);
}

bool operator==(const version& a, const version& b) {
  return (a <=> b) == 0;
}

// ---- specifier ----------------------------------------------------------------------------------

result<specifier> specifier::parse(std::string_view text) {
  const std::string_view clause = trim_ascii_space(text);
  const std::string quoted = quote_for_message(clause);
  specifier s;
  std::string_view rest;
  bool found = false;
  for (const auto& [spelling, op] : kOperators) {
    if (clause.starts_with(spelling)) {
      s.operation = op;
      rest = trim_ascii_space(clause.substr(spelling.size()));
      found = true;
      break;
    }
  }
  if (!found) {
    return error(errc::invalid_argument,
                 "version specifier " + quoted +
                     ": no operator; write one of ~=, ==, !=, <=, >=, <, >, === before the "
                     "version (e.g. >=1.2)");
  }
  if (rest.empty()) {
    return error(errc::invalid_argument,
                 "version specifier " + quoted + ": no version after the operator");
  }
  if (std::any_of(rest.begin(), rest.end(), is_ascii_space)) {
    return error(errc::invalid_argument, "version specifier " + quoted +
                                             ": white space inside the version (a missing comma "
                                             "between two clauses?)");
  }
  if (s.operation == op::arbitrary_equal) {
    s.text = std::string(rest);
    return s;
  }
  if (rest.ends_with(".*")) {
    if (s.operation != op::equal && s.operation != op::not_equal) {
      return error(errc::invalid_argument, "version specifier " + quoted +
                                               ": a .* wildcard is only allowed after == or !=");
    }
    s.wildcard = true;
    rest.remove_suffix(2);
  }
  auto v = version::parse(rest);
  if (!v)
    return error(errc::invalid_argument, "version specifier " + quoted + ": " + v.error().message);
  const bool takes_local = s.operation == op::equal || s.operation == op::not_equal;
  if (v->has_local() && (!takes_local || s.wildcard)) {
    return error(errc::invalid_argument,
                 "version specifier " + quoted +
                     ": a local version label (+...) is only allowed with == and != and no .*");
  }
  if (s.wildcard && v->is_devrelease()) {
    return error(errc::invalid_argument, "version specifier " + quoted +
                                             ": a .* wildcard may not follow a development "
                                             "release (.devN)");
  }
  if (s.operation == op::compatible && v->release().size() < 2) {
    return error(errc::invalid_argument, "version specifier " + quoted +
                                             ": ~= needs at least two release segments (~=1.0, "
                                             "not ~=1; write >=1 for the latter)");
  }
  s.text = std::string(rest);
  s.target = std::move(*v);
  return s;
}

bool specifier::matches(const version& candidate) const {
  switch (operation) {
    case op::compatible: {
      return candidate.public_version() >= target && compatible_prefix_matches(candidate, target);
    }
    case op::equal:
    case op::not_equal: {
      bool same = false;
      if (wildcard) {
        same = prefix_matches(candidate, target);
      } else if (target.has_local()) {
        same = candidate == target;
      } else {
        same = candidate.public_version() == target;
      }
      return operation == op::equal ? same : !same;
    }
    case op::less_equal:
      return candidate.public_version() <= target;
    case op::greater_equal:
      return candidate.public_version() >= target;
    case op::less:
      if (!(candidate < target)) return false;
      // <3.1 means "before the 3.1 series", so 3.1rc1 is not taken unless asked for (<3.1rc2).
      return target.is_prerelease() || !candidate.is_prerelease() ||
             candidate.base_version() != target.base_version();
    case op::greater:
      if (!(candidate > target)) return false;
      // >1.7 means "after 1.7", so neither 1.7.post1 nor 1.7+local is taken.
      if (!target.is_postrelease() && candidate.is_postrelease() &&
          candidate.base_version() == target.base_version()) {
        return false;
      }
      return !candidate.has_local() || candidate.base_version() != target.base_version();
    case op::arbitrary_equal:
      return ascii_iequals(candidate.str(), text);
  }
  return false;
}

bool specifier::matches(std::string_view candidate) const {
  const std::string_view trimmed = trim_ascii_space(candidate);
  if (operation == op::arbitrary_equal && ascii_iequals(trimmed, text)) return true;
  auto v = version::parse(trimmed);
  if (v) return matches(*v);
  return operation == op::equal && !wildcard && ascii_iequals(trimmed, text);
}

bool specifier::names_prerelease() const {
  switch (operation) {
    case op::equal:
    case op::greater_equal:
    case op::less_equal:
    case op::compatible:
      return target.is_prerelease();
    case op::arbitrary_equal: {
      auto v = version::parse(text);
      return v && v->is_prerelease();
    }
    case op::not_equal:
    case op::less:
    case op::greater:
      return false;
  }
  return false;
}

std::string specifier::str() const {
  std::string out(operator_text(operation));
  if (operation == op::arbitrary_equal) return out + text;
  out += target.str();
  if (wildcard) out += ".*";
  return out;
}

// ---- specifier_set ------------------------------------------------------------------------------

result<specifier_set> specifier_set::parse(std::string_view text) {
  specifier_set set;
  if (trim_ascii_space(text).empty()) return set;
  for (std::size_t start = 0; start <= text.size();) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view clause = text.substr(start, comma - start);
    if (trim_ascii_space(clause).empty()) {
      return error(errc::invalid_argument, "version specifiers " + quote_for_message(text) +
                                               ": an empty clause between commas");
    }
    auto s = specifier::parse(clause);
    if (!s) return s.error();
    set.clauses_.push_back(std::move(*s));
    start = comma + 1;
  }
  return set;
}

bool specifier_set::names_prerelease() const {
  return std::any_of(clauses_.begin(), clauses_.end(),
                     [](const specifier& s) { return s.names_prerelease(); });
}

bool specifier_set::contains(const version& candidate, prereleases policy) const {
  if (candidate.is_prerelease()) {
    if (policy == prereleases::deny) return false;
    if (policy == prereleases::by_specifier && !names_prerelease()) return false;
  }
  return std::all_of(clauses_.begin(), clauses_.end(),
                     [&](const specifier& s) { return s.matches(candidate); });
}

std::vector<std::size_t> specifier_set::filter(std::span<const version> candidates,
                                               prereleases policy) const {
  const bool named = names_prerelease();
  std::vector<std::size_t> taken;
  std::vector<std::size_t> held_back;  // matching pre-releases the rule keeps out for now
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    if (!contains(candidates[i], prereleases::allow)) continue;
    if (!candidates[i].is_prerelease() || policy == prereleases::allow ||
        (policy == prereleases::by_specifier && named)) {
      taken.push_back(i);
    } else if (policy == prereleases::by_specifier) {
      held_back.push_back(i);
    }
  }
  // "...or if the only available version that satisfies the version specifier is a
  // pre-release": then every satisfying pre-release is available.
  return taken.empty() ? held_back : taken;
}

std::string specifier_set::str() const {
  std::string out;
  for (const auto& c : clauses_) {
    if (!out.empty()) out += ',';
    out += c.str();
  }
  return out;
}

}  // namespace pantry::registry::pypi
