#include "pantry/config/cron.h"

#include "pantry/text.h"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace pantry::config {
namespace {

// Long enough for any date-and-weekday rule: the Gregorian weekdays repeat every 28 years
// between century years.
constexpr int kSearchDays = 28 * 366;

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 7> kDayNames = {"sun", "mon", "tue", "wed",
                                                       "thu", "fri", "sat"};

constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kMacros = {{
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
}};

struct field_spec {
  std::string_view name;
  int min;
  int max;
  std::span<const std::string_view> names;  // names[i] is min + i
};

constexpr std::array<field_spec, 5> kFields = {{
    {"minute", 0, 59, {}},
    {"hour", 0, 23, {}},
    {"day of month", 1, 31, {}},
    {"month", 1, 12, kMonthNames},
    {"day of week", 0, 7, kDayNames},
}};

bool is_blank(char c) noexcept {
  return c == ' ' || c == '\t';
}

std::vector<std::string_view> split(std::string_view s, char separator) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0;;) {
    const std::size_t at = s.find(separator, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

class field_reader {
 public:
  field_reader(std::string_view schedule, const field_spec& spec)
      : schedule_(schedule), spec_(spec) {}

  // The values of `field` as bits (bit v for value v).
  result<std::uint64_t> read(std::string_view field) const {
    std::uint64_t bits = 0;
    for (std::string_view item : split(field, ',')) {
      if (item.empty()) return fail(field, "has an empty item in its list");
      const auto parts = split(item, '/');
      if (parts.size() > 2) return fail(item, "has more than one '/'");
      int step = 1;
      if (parts.size() == 2) {
        auto s = number(parts[1]);
        if (!s || *s < 1 || *s > spec_.max - spec_.min + 1) {
          return fail(item, "has step " + quote_for_message(parts[1]) + "; use 1 to " +
                                std::to_string(spec_.max - spec_.min + 1));
        }
        step = *s;
      }
      int lo = spec_.min;
      int hi = spec_.max;
      if (parts[0] != "*") {
        const auto ends = split(parts[0], '-');
        if (ends.size() > 2) return fail(item, "has more than one '-'");
        auto first = value(ends[0]);
        if (!first) return first.error();
        lo = hi = *first;
        if (ends.size() == 2) {
          auto last = value(ends[1]);
          if (!last) return last.error();
          hi = *last;
          if (hi < lo) return fail(item, "runs backwards; write the smaller end first");
        } else if (parts.size() == 2) {
          hi = spec_.max;  // "N/S": from N to the end, as Vixie cron reads it
        }
      }
      for (int v = lo; v <= hi; v += step)
        bits |= std::uint64_t{1} << v;
    }
    return bits;
  }

 private:
  static std::optional<int> number(std::string_view s) {
    if (s.empty() || s.size() > 4) return std::nullopt;
    int n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + (c - '0');
    }
    return n;
  }

  result<int> value(std::string_view token) const {
    if (auto n = number(token)) {
      if (*n < spec_.min || *n > spec_.max) {
        return fail(token, "is out of range " + std::to_string(spec_.min) + "-" +
                               std::to_string(spec_.max));
      }
      return *n;
    }
    for (std::size_t i = 0; i < spec_.names.size(); ++i) {
      if (ascii_iequals(token, spec_.names[i])) return spec_.min + static_cast<int>(i);
    }
    std::string expected =
        "a number " + std::to_string(spec_.min) + "-" + std::to_string(spec_.max);
    if (!spec_.names.empty()) {
      expected +=
          " or a name " + std::string(spec_.names.front()) + ".." + std::string(spec_.names.back());
    }
    return fail(token, "is not " + expected);
  }

  error fail(std::string_view value, const std::string& why) const {
    return error(errc::invalid_argument, "cron schedule " + quote_for_message(schedule_) + ": " +
                                             std::string(spec_.name) + " " +
                                             quote_for_message(value) + " " + why);
  }

  std::string_view schedule_;
  const field_spec& spec_;
};

constexpr int kDaysInMonth[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

}  // namespace

result<cron_schedule> cron_schedule::parse(std::string_view text) {
  const std::string_view trimmed = trim_ascii_space(text);
  std::string_view fields_text = trimmed;
  if (trimmed.starts_with('@')) {
    bool known = false;
    for (const auto& [macro, expansion] : kMacros) {
      if (ascii_iequals(trimmed, macro)) {
        fields_text = expansion;
        known = true;
      }
    }
    if (!known) {
      return error(errc::invalid_argument,
                   "cron schedule " + quote_for_message(trimmed) +
                       ": unknown macro; use @yearly, @monthly, @weekly, @daily or @hourly, or "
                       "five fields");
    }
  }
  std::vector<std::string_view> fields;
  for (std::size_t i = 0; i < fields_text.size();) {
    while (i < fields_text.size() && is_blank(fields_text[i]))
      ++i;
    const std::size_t start = i;
    while (i < fields_text.size() && !is_blank(fields_text[i]))
      ++i;
    if (i > start) fields.push_back(fields_text.substr(start, i - start));
  }
  if (fields.size() != kFields.size()) {
    return error(errc::invalid_argument,
                 "cron schedule " + quote_for_message(trimmed) + ": " +
                     std::to_string(fields.size()) +
                     " fields; write five: minute hour day-of-month month day-of-week (e.g. "
                     "\"0 6 * * mon\"), or a macro such as @daily");
  }
  cron_schedule s;
  s.text_ = std::string(trimmed);
  std::array<std::uint64_t, 5> bits{};
  for (std::size_t i = 0; i < fields.size(); ++i) {
    auto b = field_reader(trimmed, kFields[i]).read(fields[i]);
    if (!b) return b.error();
    bits[i] = *b;
  }
  s.minutes_ = std::bitset<60>(bits[0]);
  s.hours_ = std::bitset<24>(bits[1]);
  s.days_ = std::bitset<32>(bits[2]);
  s.months_ = std::bitset<13>(bits[3]);
  // Day of week 7 is Sunday, like 0.
  s.weekdays_ = std::bitset<7>(bits[4] | ((bits[4] >> 7) & 1));
  s.days_star_ = fields[2].starts_with('*');
  s.weekdays_star_ = fields[4].starts_with('*');
  // When the days must match both fields and every weekday matches, only the dates decide:
  // refuse dates that no month of the schedule has.
  if ((s.days_star_ || s.weekdays_star_) && s.weekdays_.all()) {
    bool possible = false;
    for (int m = 1; m <= 12 && !possible; ++m) {
      for (int d = 1; d <= kDaysInMonth[m] && s.months_[m]; ++d) {
        if (s.days_[d]) {
          possible = true;
          break;
        }
      }
    }
    if (!possible) {
      return error(errc::invalid_argument,
                   "cron schedule " + quote_for_message(trimmed) + ": never fires: day of month " +
                       quote_for_message(fields[2]) + " is in none of the months " +
                       quote_for_message(fields[3]) + " (February has no day 30 or 31)");
    }
  }
  return s;
}

bool cron_schedule::day_matches(const std::chrono::year_month_day& date,
                                std::chrono::weekday wd) const {
  const bool by_date = days_[static_cast<unsigned>(date.day())];
  const bool by_weekday = weekdays_[wd.c_encoding()];
  // cron(5): a field starting with '*' makes the day match both; two restricted fields, either.
  return days_star_ || weekdays_star_ ? by_date && by_weekday : by_date || by_weekday;
}

std::optional<std::chrono::sys_seconds> cron_schedule::next_after(
    std::chrono::sys_seconds after) const {
  using namespace std::chrono;
  const sys_time<minutes> start = floor<minutes>(after) + minutes{1};
  sys_days day = floor<days>(start);
  auto from = static_cast<int>((start - day).count());  // minutes since midnight
  for (int i = 0; i < kSearchDays; ++i, day += days{1}, from = 0) {
    const year_month_day date{day};
    if (!months_[static_cast<unsigned>(date.month())] || !day_matches(date, weekday{day})) {
      continue;
    }
    for (int h = from / 60; h < 24; ++h) {
      if (!hours_[static_cast<std::size_t>(h)]) continue;
      for (int m = h == from / 60 ? from % 60 : 0; m < 60; ++m) {
        if (minutes_[static_cast<std::size_t>(m)]) {
          return sys_seconds{day} + hours{h} + minutes{m};
        }
      }
    }
  }
  return std::nullopt;
}

}  // namespace pantry::config
