#pragma once

// Cron schedules, for the pin bot's `schedule:` (when `pantry serve` checks for upgrades): the
// 5-field syntax of cron(5) and its @ macros, and the next time one fires after a given time.
// Times are UTC. Here in config, so that reading a config can check a schedule (`pantry config
// check`) and the pin bot (orchestrator/pins) can run it.
//
// Pure code: the caller gives the time; nothing here reads a clock.

#include "pantry/error.h"

#include <bitset>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::config {

class cron_schedule {
 public:
  // Parses "MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK" (fields separated by spaces or tabs),
  // each field a comma-separated list of `*`, N, N-M, `*/S` or N-M/S (N/S alone means N-MAX/S,
  // as in Vixie cron); months may be named jan..dec and days sun..sat (any case, also in
  // ranges); day of week 7 is Sunday like 0. Or one of the macros @yearly (@annually),
  // @monthly, @weekly, @daily (@midnight), @hourly. Ranges are 0-59, 0-23, 1-31, 1-12, 0-7.
  // Errors (invalid_argument) quote the schedule and name the field and the bad value: "cron
  // schedule \"0 25 * * *\": hour \"25\" is out of range 0-23", and a schedule that can never
  // fire ("0 0 30 2 *": "February has no day 30 or 31").
  static result<cron_schedule> parse(std::string_view text);

  // The first minute strictly after `after` at which the schedule fires. The day matches as
  // cron(5) says and Vixie cron does: when both day of month and day of week are restricted
  // (neither field starts with `*`), a day matching either fires ("0 0 13 * fri" fires on every
  // 13th and every Friday); when one starts with `*` (also `*/2`), a day must match both, so
  // the other decides. nullopt only when no such minute comes within 28 years (impossible
  // dates are refused by parse(); a date-and-weekday rule repeats within 28 years).
  std::optional<std::chrono::sys_seconds> next_after(std::chrono::sys_seconds after) const;

  // The schedule as given to parse(), trimmed.
  const std::string& str() const noexcept { return text_; }

 private:
  bool day_matches(const std::chrono::year_month_day& date, std::chrono::weekday wd) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;        // 1..31
  std::bitset<13> months_;      // 1..12
  std::bitset<7> weekdays_;     // 0 (Sunday) .. 6
  bool days_star_ = false;      // the day-of-month field starts with '*'
  bool weekdays_star_ = false;  // the day-of-week field starts with '*'
};

}  // namespace pantry::config
