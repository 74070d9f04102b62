#include "pantry/config/reload.h"

#include "parse_helpers.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::config {
namespace {

constexpr std::string_view kRunning = R"(
listen: 127.0.0.1:8585
data_dir: /srv/pantry
server:
  threads: 2
pypi:
  upstreams:
    - name: internal
      url: http://10.0.0.1/simple/
    - name: pypi
      url: https://pypi.org/simple/
  index_ttl: 10m
  hosted:
    - name: team
      uploaders: [ci]
oci:
  hosted:
    users:
      - name: ci
        token: "0123456789abcdef0123"
      - name: alice
        token: "alice-token-0123456789"
)";

std::vector<std::string> keys_of(const std::vector<restart_change>& changes) {
  std::vector<std::string> out;
  for (const auto& c : changes)
    out.push_back(c.key);
  return out;
}

TEST(ReloadTest, SameFileChangesNothing) {
  const config running = parse_ok(kRunning);
  const reload_plan plan = plan_reload(running, parse_ok(kRunning));
  EXPECT_TRUE(plan.changed.empty()) << ::testing::PrintToString(plan.changed);
  EXPECT_TRUE(plan.needs_restart.empty()) << ::testing::PrintToString(keys_of(plan.needs_restart));
  EXPECT_EQ(plan.next, running);
}

TEST(ReloadTest, LiveSettingsAreTakenAndNamedInFileOrder) {
  const config running = parse_ok(kRunning);
  std::string text(kRunning);
  text += R"(
  tag_ttl: 1m
ci:
  quarantine:
    app: ["tests/test_a.py::test_flaky"]
)";
  config wanted = parse_ok(text);
  wanted.pypi.index_ttl = std::chrono::seconds(30);
  wanted.pypi.upstreams.erase(wanted.pypi.upstreams.begin());
  wanted.oci.hosted.users.pop_back();  // alice goes; ci stays, still team's uploader
  const reload_plan plan = plan_reload(running, wanted);
  EXPECT_EQ(plan.changed,
            (std::vector<std::string>{"pypi.upstreams", "pypi.index_ttl", "oci.tag_ttl",
                                      "oci.hosted.users", "ci.quarantine"}));
  EXPECT_TRUE(plan.needs_restart.empty()) << ::testing::PrintToString(keys_of(plan.needs_restart));
  EXPECT_EQ(plan.next, wanted);
  EXPECT_TRUE(check_reloaded(plan.next, "new.yaml").has_value());
}

TEST(ReloadTest, RestartOnlySettingsKeepTheirRunningValueAndSayBoth) {
  const config running = parse_ok(kRunning);
  config wanted = running;
  wanted.listen.port = 9090;
  wanted.data_dir = "/srv/other";
  wanted.server.threads = 8;
  wanted.upstream.connect_timeout = std::chrono::seconds(3);
  wanted.cache.max_size = running.cache.max_size * 2;  // above what the map holds
  wanted.runner.defaults.memory *= 2;
  wanted.ci.enabled = !running.ci.enabled;
  wanted.pins.schedule = "0 6 * * 1";            // the schedule inside serve started on the old
  wanted.oci.tag_ttl = std::chrono::seconds(7);  // live, beside them
  const reload_plan plan = plan_reload(running, wanted, running.cache.max_size);
  EXPECT_EQ(
      keys_of(plan.needs_restart),
      (std::vector<std::string>{"listen", "data_dir", "server.threads", "upstream.connect_timeout",
                                "cache.max_size", "runner", "ci.enabled", "pins"}));
  ASSERT_FALSE(plan.needs_restart.empty());
  EXPECT_EQ(plan.needs_restart[0], (restart_change{"listen", "127.0.0.1:8585", "127.0.0.1:9090"}));
  EXPECT_EQ(plan.needs_restart[2], (restart_change{"server.threads", "2", "8"}));
  EXPECT_EQ(plan.needs_restart[4], (restart_change{"cache.max_size", "50GiB", "100GiB"}));
  EXPECT_EQ(plan.needs_restart[5], (restart_change{"runner", "", ""}));  // a section: no value
  EXPECT_EQ(plan.changed, (std::vector<std::string>{"oci.tag_ttl"}));
  config expected = running;
  expected.oci.tag_ttl = std::chrono::seconds(7);
  EXPECT_EQ(plan.next, expected);
}

TEST(ReloadTest, LogLevelAndAccessLogChangeLiveBesideRestartOnlyServerSettings) {
  const config running = parse_ok(kRunning);
  ASSERT_TRUE(running.server.access_log);
  ASSERT_EQ(running.server.log_level, log_level::info);
  std::string text(kRunning);
  const std::string threads = "  threads: 2\n";
  text.insert(text.find(threads) + threads.size(), "  access_log: false\n  log_level: debug\n");
  config wanted = parse_ok(text);
  wanted.server.idle_timeout = running.server.idle_timeout * 2;
  const reload_plan plan = plan_reload(running, wanted);
  EXPECT_EQ(plan.changed, (std::vector<std::string>{"server.access_log", "server.log_level"}));
  EXPECT_EQ(keys_of(plan.needs_restart), std::vector<std::string>{"server.idle_timeout"});
  EXPECT_FALSE(plan.next.server.access_log);
  EXPECT_EQ(plan.next.server.log_level, log_level::debug);
  EXPECT_EQ(plan.next.server.idle_timeout, running.server.idle_timeout);
  EXPECT_TRUE(check_reloaded(plan.next, "new.yaml").has_value());

  // And back: each is named again.
  const reload_plan back = plan_reload(plan.next, running);
  EXPECT_EQ(back.changed, (std::vector<std::string>{"server.access_log", "server.log_level"}));
  EXPECT_TRUE(back.needs_restart.empty()) << ::testing::PrintToString(keys_of(back.needs_restart));
  EXPECT_EQ(back.next, running);
}

TEST(ReloadTest, TheCacheQuotaIsLiveUpToWhatTheMapHolds) {
  const config running = parse_ok(kRunning);  // 50GiB
  constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
  const std::uint64_t limit = 80 * kGiB;
  config wanted = running;

  // Lower, and higher within the limit: live.
  for (std::uint64_t size : {10 * kGiB, 80 * kGiB}) {
    wanted.cache.max_size = size;
    const reload_plan plan = plan_reload(running, wanted, limit);
    EXPECT_EQ(plan.changed, std::vector<std::string>{"cache.max_size"}) << size;
    EXPECT_TRUE(plan.needs_restart.empty())
        << ::testing::PrintToString(keys_of(plan.needs_restart));
    EXPECT_EQ(plan.next.cache.max_size, size);
  }

  // Above it: raised to the limit, and the rest needs a restart.
  wanted.cache.max_size = 200 * kGiB;
  reload_plan plan = plan_reload(running, wanted, limit);
  EXPECT_EQ(plan.changed, std::vector<std::string>{"cache.max_size"});
  EXPECT_EQ(plan.needs_restart,
            (std::vector<restart_change>{{"cache.max_size", "80GiB", "200GiB"}}));
  EXPECT_EQ(plan.next.cache.max_size, limit);
  EXPECT_TRUE(check_reloaded(plan.next, "new.yaml").has_value());

  // Reloading the same file again: nothing changes, and it still needs a restart.
  plan = plan_reload(plan.next, wanted, limit);
  EXPECT_TRUE(plan.changed.empty()) << ::testing::PrintToString(plan.changed);
  EXPECT_EQ(plan.needs_restart,
            (std::vector<restart_change>{{"cache.max_size", "80GiB", "200GiB"}}));
}

TEST(ReloadTest, HostedIndexNamesNeedARestartTheirUploadersDoNot) {
  const config running = parse_ok(kRunning);
  config wanted = running;
  wanted.pypi.hosted[0].uploaders = {"ci", "alice"};
  reload_plan plan = plan_reload(running, wanted);
  EXPECT_EQ(plan.changed, (std::vector<std::string>{"pypi.hosted"}));
  EXPECT_TRUE(plan.needs_restart.empty());

  wanted.pypi.hosted[0].name = "teams";
  plan = plan_reload(running, wanted);
  EXPECT_TRUE(plan.changed.empty()) << ::testing::PrintToString(plan.changed);
  EXPECT_EQ(plan.needs_restart,
            (std::vector<restart_change>{{"pypi.hosted", "[team]", "[teams]"}}));
  EXPECT_EQ(plan.next.pypi.hosted, running.pypi.hosted);
}

TEST(ReloadTest, AKeptSettingThatNoLongerFitsTheNewOnesIsRefused) {
  // The index `team` (kept: renaming it needs a restart) names `ci` as its uploader, and the
  // new file removes the user ci.
  const config running = parse_ok(kRunning);
  config wanted = running;
  wanted.pypi.hosted = {pypi_hosted{"other", {"alice"}, {}}};
  wanted.oci.hosted.users.erase(wanted.oci.hosted.users.begin());
  const reload_plan plan = plan_reload(running, wanted);
  ASSERT_EQ(plan.next.pypi.hosted, running.pypi.hosted);
  auto checked = check_reloaded(plan.next, "new.yaml");
  ASSERT_FALSE(checked.has_value());
  const std::string& m = checked.error().message;
  EXPECT_TRUE(m.starts_with("new.yaml: pypi.hosted")) << m;
  EXPECT_NE(m.find("\"ci\""), std::string::npos) << m;
  EXPECT_NE(m.find("kept at their running values"), std::string::npos) << m;
}

}  // namespace
}  // namespace pantry::config
