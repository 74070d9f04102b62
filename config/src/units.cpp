// Sizes and durations: parse_size, parse_duration and the format_* functions that write them back
// (config.h has their contracts).

#include "chars.h"
#include "message.h"
#include "pantry/config/config.h"
#include "pantry/text.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <string>

namespace pantry::config {
namespace {

using detail::all_digits;
using detail::is_alpha;
using detail::is_digit;
using detail::quote;

// Durations are added to clock time points in nanoseconds, which overflow after 292 years.
constexpr std::int64_t kMaxDurationSeconds = 36500LL * 86400;

constexpr std::string_view kSizeUnitsHint = "use a number with B, KiB, MiB, GiB or TiB, e.g. 50GiB";
constexpr std::string_view kDurationUnitsHint =
    "use a whole number with s, m, h or d, e.g. 90s, 10m, 7d or 1h30m";

struct unit {
  std::string_view name;
  std::uint64_t factor;
};

// Accepted case-insensitively. KB/MB/… are binary here on purpose: see parse_size in config.h.
constexpr std::array<unit, 22> kSizeUnits = {{
    {"", 1},
    {"b", 1},
    {"k", 1ULL << 10},
    {"kb", 1ULL << 10},
    {"kib", 1ULL << 10},
    {"m", 1ULL << 20},
    {"mb", 1ULL << 20},
    {"mib", 1ULL << 20},
    {"g", 1ULL << 30},
    {"gb", 1ULL << 30},
    {"gib", 1ULL << 30},
    {"t", 1ULL << 40},
    {"tb", 1ULL << 40},
    {"tib", 1ULL << 40},
    {"p", 1ULL << 50},
    {"pb", 1ULL << 50},
    {"pib", 1ULL << 50},
    {"e", 1ULL << 60},
    {"eb", 1ULL << 60},
    {"eib", 1ULL << 60},
    {"bytes", 1},
    {"byte", 1},
}};

// Largest first, for format_size.
constexpr std::array<unit, 7> kSizeNames = {{
    {"EiB", 1ULL << 60},
    {"PiB", 1ULL << 50},
    {"TiB", 1ULL << 40},
    {"GiB", 1ULL << 30},
    {"MiB", 1ULL << 20},
    {"KiB", 1ULL << 10},
    {"B", 1},
}};

// Largest first: a duration's parts must come in this order.
constexpr std::array<unit, 4> kDurationUnits = {{
    {"d", 86400},
    {"h", 3600},
    {"m", 60},
    {"s", 1},
}};

}  // namespace

result<std::uint64_t> parse_size(std::string_view text) {
  const std::string q = quote(text);
  if (text.empty())
    return pantry::error(errc::config_error, q + " is empty; " + std::string(kSizeUnitsHint));
  if (text.front() == '-') {
    return pantry::error(errc::config_error, q + " is negative; " + std::string(kSizeUnitsHint));
  }
  std::size_t i = 0;
  unsigned __int128 whole = 0;
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  const auto too_large = [&] {
    return pantry::error(errc::config_error, q + " is too large; the largest size is " +
                                                 std::to_string(kMax) +
                                                 " bytes (just under 16EiB)");
  };
  while (i < text.size() && is_digit(text[i])) {
    whole = whole * 10 + static_cast<unsigned>(text[i] - '0');
    if (whole > kMax) return too_large();
    ++i;
  }
  if (i == 0) {
    return pantry::error(errc::config_error, q + " is not a size; " + std::string(kSizeUnitsHint));
  }
  unsigned __int128 fraction = 0;
  unsigned __int128 scale = 1;
  const bool has_point = i < text.size() && text[i] == '.';
  if (has_point) {
    ++i;
    const std::size_t start = i;
    while (i < text.size() && is_digit(text[i])) {
      if (i - start >= 18) {
        return pantry::error(errc::config_error,
                             q + " has too many decimal places; use at most 18, e.g. 1.5GiB");
      }
      fraction = fraction * 10 + static_cast<unsigned>(text[i] - '0');
      scale *= 10;
      ++i;
    }
    if (i == start) {
      return pantry::error(errc::config_error,
                           q + " has no digits after the decimal point; e.g. 1.5GiB");
    }
  }
  const std::string_view suffix = text.substr(i);
  const auto u = std::find_if(kSizeUnits.begin(), kSizeUnits.end(),
                              [&](const unit& x) { return ascii_iequals(x.name, suffix); });
  if (u == kSizeUnits.end()) {
    const bool plain_word = std::all_of(suffix.begin(), suffix.end(), is_alpha);
    return pantry::error(
        errc::config_error,
        q + (plain_word ? " has an unknown unit " + quote(suffix) : std::string(" is not a size")) +
            "; " + std::string(kSizeUnitsHint));
  }
  if (has_point && u->factor == 1) {
    return pantry::error(errc::config_error,
                         q + " is not a whole number of bytes; drop the fraction or use a larger "
                             "unit, e.g. 1.5KiB");
  }
  // A fraction of a unit rounds down to whole bytes.
  const unsigned __int128 bytes = whole * u->factor + fraction * u->factor / scale;
  if (bytes > kMax) return too_large();
  return static_cast<std::uint64_t>(bytes);
}

result<std::chrono::seconds> parse_duration(std::string_view text) {
  const std::string q = quote(text);
  const auto fail = [&](std::string why) {
    return pantry::error(errc::config_error, q + " " + why);
  };
  if (text.empty()) return fail("is empty; " + std::string(kDurationUnitsHint));
  if (text.front() == '-') return fail("is negative; " + std::string(kDurationUnitsHint));
  if (all_digits(text)) {
    const std::string n(text.substr(0, 12));
    return fail("has no unit; add one: " + n + "s (seconds), " + n + "m, " + n + "h or " + n + "d");
  }
  std::int64_t total = 0;
  std::size_t next_unit = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = i;
    std::int64_t n = 0;
    while (i < text.size() && is_digit(text[i])) {
      if (n > kMaxDurationSeconds) break;
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    if (i < text.size() && is_digit(text[i])) {
      return fail("is too long; the longest duration is " +
                  format_duration(std::chrono::seconds(kMaxDurationSeconds)) + " (100 years)");
    }
    if (i == start) {
      return fail("is not a duration; " + std::string(kDurationUnitsHint));
    }
    if (i < text.size() && text[i] == '.') {
      return fail("is not a whole number; combine units instead, e.g. 1h30m rather than 1.5h");
    }
    const std::size_t unit_start = i;
    while (i < text.size() && is_alpha(text[i]))
      ++i;
    const std::string_view suffix = text.substr(unit_start, i - unit_start);
    if (suffix.empty()) {
      if (i == text.size()) {
        return fail("ends in a number without a unit; add s, m, h or d, e.g. 1h30m");
      }
      return fail("is not a duration; " + std::string(kDurationUnitsHint));
    }
    const auto u = std::find_if(kDurationUnits.begin(), kDurationUnits.end(),
                                [&](const unit& x) { return x.name == suffix; });
    if (u == kDurationUnits.end()) {
      return fail("has an unknown unit " + quote(suffix) + "; " + std::string(kDurationUnitsHint));
    }
    const auto rank = static_cast<std::size_t>(u - kDurationUnits.begin());
    if (rank < next_unit) {
      return fail(
          "repeats a unit or puts a smaller one first; write each unit once, largest "
          "first, e.g. 1h30m");
    }
    next_unit = rank + 1;
    total += n * static_cast<std::int64_t>(u->factor);
    if (n > kMaxDurationSeconds || total > kMaxDurationSeconds) {
      return fail("is too long; the longest duration is " +
                  format_duration(std::chrono::seconds(kMaxDurationSeconds)) + " (100 years)");
    }
  }
  return std::chrono::seconds(total);
}

std::string format_size(std::uint64_t bytes) {
  if (bytes == 0) return "0B";
  for (const unit& u : kSizeNames) {
    if (bytes % u.factor == 0) return std::to_string(bytes / u.factor) + std::string(u.name);
  }
  return std::to_string(bytes) + "B";
}

std::string format_duration(std::chrono::seconds d) {
  const std::int64_t count = d.count();
  if (count == 0) return "0s";
  std::string out = count < 0 ? "-" : "";
  // Through unsigned so that the most negative value has a magnitude.
  std::uint64_t left =
      count < 0 ? 0 - static_cast<std::uint64_t>(count) : static_cast<std::uint64_t>(count);
  for (const unit& u : kDurationUnits) {
    if (left >= u.factor) {
      out += std::to_string(left / u.factor) + std::string(u.name);
      left %= u.factor;
    }
  }
  return out;
}
}  // namespace pantry::config
