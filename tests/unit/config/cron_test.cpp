// Cron schedules: field syntax, errors that name the field and value, and next fire times
// across month ends, leap years and the day-of-month / day-of-week rule.

#include "pantry/config/cron.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace pantry::config {
namespace {

using namespace std::chrono;

sys_seconds at(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s};
}

std::string show(std::optional<sys_seconds> t) {
  if (!t) return "never";
  const auto day = floor<days>(*t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{*t - day};
  char out[32];
  std::snprintf(out, sizeof out, "%04d-%02u-%02u %02ld:%02ld", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()));
  return out;
}

cron_schedule cron(std::string_view text) {
  auto s = cron_schedule::parse(text);
  EXPECT_TRUE(s.has_value()) << text << ": " << (s ? "" : s.error().message);
  return s ? *s : cron_schedule{};
}

// The next `n` fire times after `from`, one after the other.
std::vector<std::string> next(std::string_view text, sys_seconds from, int n) {
  const auto s = cron(text);
  std::vector<std::string> out;
  std::optional<sys_seconds> t = from;
  for (int i = 0; i < n && t; ++i) {
    t = s.next_after(*t);
    out.push_back(show(t));
  }
  return out;
}

TEST(CronTest, NextFireTimes) {
  const auto from = at(2024, 1, 30, 10, 17, 42);  // a Tuesday
  EXPECT_EQ(next("*/15 * * * *", from, 3),
            (std::vector<std::string>{"2024-01-30 10:30", "2024-01-30 10:45", "2024-01-30 11:00"}));
  EXPECT_EQ(next("17 10 * * *", from, 2),
            (std::vector<std::string>{"2024-01-31 10:17", "2024-02-01 10:17"}))
      << "strictly after: the current minute has begun";
  EXPECT_EQ(next("0 6 * * mon-fri", from, 4),
            (std::vector<std::string>{"2024-01-31 06:00", "2024-02-01 06:00", "2024-02-02 06:00",
                                      "2024-02-05 06:00"}));
  EXPECT_EQ(next("30 2 1,15 * *", from, 3),
            (std::vector<std::string>{"2024-02-01 02:30", "2024-02-15 02:30", "2024-03-01 02:30"}));
  EXPECT_EQ(next("0 0 1-7/3 jan,JUL *", from, 3),
            (std::vector<std::string>{"2024-07-01 00:00", "2024-07-04 00:00", "2024-07-07 00:00"}));
  EXPECT_EQ(next("0 12 * * 7", from, 1), (std::vector<std::string>{"2024-02-04 12:00"}))
      << "7 is Sunday";
  EXPECT_EQ(next("0 12 * * SUN", from, 1), (std::vector<std::string>{"2024-02-04 12:00"}));
  EXPECT_EQ(next("5/20 8-9 * * *", from, 4),
            (std::vector<std::string>{"2024-01-31 08:05", "2024-01-31 08:25", "2024-01-31 08:45",
                                      "2024-01-31 09:05"}));
}

TEST(CronTest, MonthEndsAndLeapYears) {
  EXPECT_EQ(next("0 0 31 * *", at(2024, 1, 31, 12), 3),
            (std::vector<std::string>{"2024-03-31 00:00", "2024-05-31 00:00", "2024-07-31 00:00"}));
  EXPECT_EQ(next("0 0 29 2 *", at(2024, 3, 1), 2),
            (std::vector<std::string>{"2028-02-29 00:00", "2032-02-29 00:00"}));
  // 2100 is no leap year: 2096 is followed by 2104.
  EXPECT_EQ(next("0 0 29 2 *", at(2096, 3, 1), 1), (std::vector<std::string>{"2104-02-29 00:00"}));
  EXPECT_EQ(next("59 23 28-29 feb *", at(2023, 2, 28, 23, 59), 2),
            (std::vector<std::string>{"2024-02-28 23:59", "2024-02-29 23:59"}));
  EXPECT_EQ(next("0 0 * * *", at(2023, 12, 31, 23, 59, 59), 1),
            (std::vector<std::string>{"2024-01-01 00:00"}));
}

TEST(CronTest, DayOfMonthOrDayOfWeek) {
  // Both restricted: the 13th or a Friday.
  EXPECT_EQ(next("0 0 13 * fri", at(2024, 9, 1), 4),
            (std::vector<std::string>{"2024-09-06 00:00", "2024-09-13 00:00", "2024-09-20 00:00",
                                      "2024-09-27 00:00"}));
  EXPECT_EQ(next("0 0 1 * mon", at(2024, 9, 28), 3),
            (std::vector<std::string>{"2024-09-30 00:00", "2024-10-01 00:00", "2024-10-07 00:00"}));
  // A field starting with '*' makes the other decide (both must match).
  EXPECT_EQ(next("0 0 * * fri", at(2024, 9, 1), 1), (std::vector<std::string>{"2024-09-06 00:00"}));
  EXPECT_EQ(next("0 0 */10 * mon", at(2024, 1, 1), 2),
            (std::vector<std::string>{"2024-03-11 00:00", "2024-04-01 00:00"}))
      << "*/10 days are 1, 11, 21, 31; the Mondays among them after Monday 2024-01-01";
  // Both: the 29th of February that is a Monday (OR: also every Monday).
  EXPECT_EQ(next("0 0 29 2 mon", at(2024, 2, 27), 3),
            (std::vector<std::string>{"2024-02-29 00:00", "2025-02-03 00:00", "2025-02-10 00:00"}))
      << "the 29th, then February's Mondays";
}

TEST(CronTest, Macros) {
  const auto from = at(2024, 5, 15, 13, 45);  // a Wednesday
  EXPECT_EQ(next("@hourly", from, 1), (std::vector<std::string>{"2024-05-15 14:00"}));
  EXPECT_EQ(next("@daily", from, 1), (std::vector<std::string>{"2024-05-16 00:00"}));
  EXPECT_EQ(next("@midnight", from, 1), (std::vector<std::string>{"2024-05-16 00:00"}));
  EXPECT_EQ(next("@weekly", from, 1), (std::vector<std::string>{"2024-05-19 00:00"}));
  EXPECT_EQ(next("@monthly", from, 1), (std::vector<std::string>{"2024-06-01 00:00"}));
  EXPECT_EQ(next("@yearly", from, 1), (std::vector<std::string>{"2025-01-01 00:00"}));
  EXPECT_EQ(next("  @Annually ", from, 1), (std::vector<std::string>{"2025-01-01 00:00"}));
  EXPECT_EQ(cron(" 0  6\t* * 1 ").str(), "0  6\t* * 1");
}

TEST(CronTest, ErrorsNameTheFieldAndTheValue) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"0 25 * * *", "cron schedule \"0 25 * * *\": hour \"25\" is out of range 0-23"},
      {"60 * * * *", "minute \"60\" is out of range 0-59"},
      {"* * 0 * *", "day of month \"0\" is out of range 1-31"},
      {"* * * 13 *", "month \"13\" is out of range 1-12"},
      {"* * * * 8", "day of week \"8\" is out of range 0-7"},
      {"* * * foo *", "month \"foo\" is not a number 1-12 or a name jan..dec"},
      {"* * * * monday", "day of week \"monday\" is not a number 0-7 or a name sun..sat"},
      {"5-1 * * * *", "minute \"5-1\" runs backwards"},
      {"*/0 * * * *", "minute \"*/0\" has step \"0\"; use 1 to 60"},
      {"*/x * * * *", "has step \"x\""},
      {"1,,2 * * * *", "minute \"1,,2\" has an empty item"},
      {"1/2/3 * * * *", "has more than one '/'"},
      {"1-2-3 * * * *", "has more than one '-'"},
      {"* * * *", "4 fields; write five"},
      {"* * * * * *", "6 fields"},
      {"", "0 fields"},
      {"@reboot", "unknown macro"},
      {"0 0 30 2 *", "never fires: day of month \"30\" is in none of the months \"2\""},
      {"0 0 31 apr,jun,sep,nov *", "never fires"},
      {"-1 * * * *", "minute \"\" is not a number"},
  };
  for (const auto& [text, want] : cases) {
    auto s = cron_schedule::parse(text);
    ASSERT_FALSE(s.has_value()) << "\"" << text << "\" parsed";
    EXPECT_NE(s.error().message.find(want), std::string::npos)
        << "\"" << text << "\": " << s.error().message;
    EXPECT_TRUE(s.error().is(errc::invalid_argument));
  }
  // Impossible dates are fine when the weekday field is restricted too (either may match).
  EXPECT_TRUE(cron_schedule::parse("0 0 30 2 mon").has_value());
  EXPECT_TRUE(cron_schedule::parse("0 0 31 * *").has_value());
}

}  // namespace
}  // namespace pantry::config
