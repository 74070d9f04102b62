// The pin bot's schedule inside `pantry serve`: the next run after a given time, and the due
// times a long run overlapped, which are skipped and counted rather than run late.

#include "pantry/orchestrator/pins/schedule.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace pantry::orchestrator::pins {
namespace {

using namespace std::chrono;

sys_seconds at(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s};
}

std::string show(std::optional<sys_seconds> t) {
  if (!t) return "none";
  const auto day = floor<days>(*t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{*t - day};
  char out[40];
  std::snprintf(out, sizeof out, "%04d-%02u-%02u %02ld:%02ld:%02ld", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                static_cast<long>(hms.seconds().count()));
  return out;
}

config::cron_schedule cron(std::string_view text) {
  auto s = config::cron_schedule::parse(text);
  EXPECT_TRUE(s.has_value()) << text << ": " << (s ? "" : s.error().message);
  return s ? *s : config::cron_schedule{};
}

TEST(PinsScheduleTest, AtStartTheFirstRunIsTheNextDueTimeAndNothingIsSkipped) {
  const auto s = cron("0 6 * * mon-fri");
  // Saturday 2026-12-05 10:00: the next weekday 06:00 is Monday's.
  auto next = plan_next_run(s, std::nullopt, at(2026, 12, 5, 10));
  ASSERT_TRUE(next);
  EXPECT_EQ(show(next->at), "2026-12-07 06:00:00");
  EXPECT_EQ(next->skipped, 0u);
  EXPECT_EQ(show(next->first_skipped), "none");
}

TEST(PinsScheduleTest, ADueTimeExactlyNowIsNotTakenAgain) {
  const auto s = cron("*/15 * * * *");
  // The run due at 10:15 ends within its minute: the next is 10:30, nothing skipped.
  auto next = plan_next_run(s, at(2026, 12, 7, 10, 15), at(2026, 12, 7, 10, 15, 40));
  ASSERT_TRUE(next);
  EXPECT_EQ(show(next->at), "2026-12-07 10:30:00");
  EXPECT_EQ(next->skipped, 0u);
  // Started at the due time and ended exactly at the next one: that one was overlapped.
  next = plan_next_run(s, at(2026, 12, 7, 10, 15), at(2026, 12, 7, 10, 30));
  ASSERT_TRUE(next);
  EXPECT_EQ(show(next->at), "2026-12-07 10:45:00");
  EXPECT_EQ(next->skipped, 1u);
  EXPECT_EQ(show(next->first_skipped), "2026-12-07 10:30:00");
}

TEST(PinsScheduleTest, ARunThatOverlapsDueTimesSkipsThemAndCountsThem) {
  const auto s = cron("* * * * *");
  // Due at 10:00, the run ends at 10:03:20: 10:01, 10:02 and 10:03 passed; the next is 10:04.
  auto next = plan_next_run(s, at(2026, 12, 7, 10, 0), at(2026, 12, 7, 10, 3, 20));
  ASSERT_TRUE(next);
  EXPECT_EQ(show(next->at), "2026-12-07 10:04:00");
  EXPECT_EQ(next->skipped, 3u);
  EXPECT_EQ(show(next->first_skipped), "2026-12-07 10:01:00");
}

TEST(PinsScheduleTest, SkippedTimesAreCountedUpToTheLimit) {
  const auto s = cron("* * * * *");
  // A run of a week (or a clock set forward): the count stops at the limit, the next run is
  // still the first due time after now.
  auto next = plan_next_run(s, at(2026, 12, 1, 0, 0), at(2026, 12, 8, 0, 0, 30));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->skipped, kMaxCounted);
  EXPECT_EQ(show(next->at), "2026-12-08 00:01:00");
}

TEST(PinsScheduleTest, AClockSetBackSkipsNothing) {
  const auto s = cron("@hourly");
  // The previous due time is later than now (the clock went back): nothing passed since it.
  auto next = plan_next_run(s, at(2026, 12, 7, 12, 0), at(2026, 12, 7, 9, 30));
  ASSERT_TRUE(next);
  EXPECT_EQ(show(next->at), "2026-12-07 10:00:00");
  EXPECT_EQ(next->skipped, 0u);
}

}  // namespace
}  // namespace pantry::orchestrator::pins
