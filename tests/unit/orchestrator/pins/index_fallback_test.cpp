// What the pin bot takes from warehouse's JSON API when pantry's page lacks PEP 700's data (an
// upstream that serves only HTML): upload times, yanks and Requires-Python matched by file name,
// what the page says kept; and the decisions that follow, with and without that answer.

#include "pantry/orchestrator/pins/index_fallback.h"

#include "pantry/orchestrator/pins/decide.h"
#include "unit/orchestrator/pins/decide_helpers.h"
#include "unit/orchestrator/pins/requirements_text.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace pantry::orchestrator::pins {
namespace {

namespace pypi = registry::pypi;
using namespace std::chrono_literals;
using test::doc_of;
using test::hex_of;
using test::reasons_of;

// An HTML page as an HTML-only upstream (and pantry after it) lists the project: file names,
// hashes (not for the sdist of 2.0), no upload times; 1.5's wheel is yanked on the page itself.
pypi::project_page html_page() {
  const std::string body =
      "<!DOCTYPE html><html><body>\n"
      "<a href=\"/files/up/h/demo_html-1.0-py3-none-any.whl#sha256=" +
      hex_of('a') +
      "\">demo_html-1.0-py3-none-any.whl</a>\n"
      "<a href=\"/files/up/h/demo_html-1.5-py3-none-any.whl#sha256=" +
      hex_of('b') +
      "\" data-yanked=\"bad wheel\">demo_html-1.5-py3-none-any.whl</a>\n"
      "<a href=\"/files/up/h/demo_html-2.0-py3-none-any.whl#sha256=" +
      hex_of('c') +
      "\">demo_html-2.0-py3-none-any.whl</a>\n"
      "<a href=\"http://files.test/p/Demo.HTML-2.0.tar.gz\">Demo.HTML-2.0.tar.gz</a>\n"
      "<a href=\"/files/up/h/demo_html-3.0-py3-none-any.whl#sha256=" +
      hex_of('d') + "\">demo_html-3.0-py3-none-any.whl</a>\n</body></html>\n";
  auto page = pypi::parse_project_html(body, "http://pantry.test/simple/demo-html/");
  EXPECT_TRUE(page.has_value()) << (page ? "" : page.error().message);
  return *page;
}

// /pypi/demo-html/json as warehouse writes it: every file's upload time; 3.0 yanked and needing
// Python 3.12 (which the page does not say); 1.5 not yanked (the page's word wins).
std::string json_api() {
  const auto file = [](const std::string& name, const std::string& time, bool yanked,
                       const std::string& reason, const std::string& python) {
    return "{\"filename\":\"" + name + "\",\"upload_time\":\"" + time.substr(0, 19) +
           "\",\"upload_time_iso_8601\":\"" + time +
           "\",\"yanked\":" + (yanked ? "true" : "false") +
           ",\"yanked_reason\":" + (reason.empty() ? std::string("null") : "\"" + reason + "\"") +
           ",\"requires_python\":" + (python.empty() ? std::string("null") : "\"" + python + "\"") +
           ",\"digests\":{\"sha256\":\"" + hex_of('f') + "\"}}";
  };
  return "{\"info\":{\"name\":\"Demo.HTML\"},\"releases\":{"
         "\"1.0\":[" +
         file("demo_html-1.0-py3-none-any.whl", "2026-01-01T00:00:00.000000Z", false, "", "") +
         "],\"1.5\":[" +
         file("demo_html-1.5-py3-none-any.whl", "2026-02-01T00:00:00.000000Z", false, "", "") +
         "],\"2.0\":[" +
         file("demo_html-2.0-py3-none-any.whl", "2026-03-01T00:00:00.000000Z", false, "", "") +
         "," + file("Demo.HTML-2.0.tar.gz", "2026-03-02T00:00:00.000000Z", false, "", ">=3.8") +
         "],\"3.0\":[" +
         file("demo_html-3.0-py3-none-any.whl", "2026-05-31T00:00:00.000000Z", true, "oops",
              ">=3.12") +
         "],\"9.9\":[" +
         file("demo_html-9.9-py3-none-any.whl", "2026-05-31T00:00:00.000000Z", false, "", "") +
         "]},\"urls\":[]}";
}

TEST(IndexFallbackTest, AnHtmlPageNeedsTheJsonApiAndAJsonOneWithTimesDoesNot) {
  auto page = html_page();
  EXPECT_TRUE(page.from_html);
  EXPECT_TRUE(needs_json_api(page));
  for (auto& f : page.files)
    f.upload_time = "2026-01-01T00:00:00Z";
  EXPECT_FALSE(needs_json_api(page));
}

TEST(IndexFallbackTest, TheJsonApiFillsWhatThePageLacksAndKeepsWhatItSays) {
  auto page = html_page();
  ASSERT_EQ(page.files.size(), 5u);
  auto merged = merge_json_api(page, json_api());
  ASSERT_TRUE(merged.has_value()) << merged.error().message;
  EXPECT_EQ(*merged, 5u);
  const auto& f = page.files;
  EXPECT_EQ(f[0].upload_time, "2026-01-01T00:00:00.000000Z");
  EXPECT_FALSE(f[0].yanked);
  EXPECT_EQ(f[1].yanked, "bad wheel");  // the page's yank stays
  EXPECT_EQ(f[3].filename, "Demo.HTML-2.0.tar.gz");
  EXPECT_EQ(f[3].upload_time, "2026-03-02T00:00:00.000000Z");
  EXPECT_EQ(f[3].requires_python, ">=3.8");
  EXPECT_TRUE(f[3].hashes.empty()) << "digests come from the page or a download, never from here";
  EXPECT_EQ(f[4].yanked, "oops");
  EXPECT_EQ(f[4].requires_python, ">=3.12");
  // 9.9 is only in the answer: not installable through the page, not added.
  EXPECT_EQ(page.files.size(), 5u);
}

TEST(IndexFallbackTest, AMalformedAnswerIsAnErrorNamingTheKey) {
  auto page = html_page();
  const auto before = page;
  auto r = merge_json_api(page, "not json");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("not JSON"), std::string::npos) << r.error().message;
  r = merge_json_api(page, R"({"releases": []})");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("\"releases\""), std::string::npos) << r.error().message;
  r = merge_json_api(page, R"({"releases": {"1.0": {}}})");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("\"1.0\""), std::string::npos) << r.error().message;
  EXPECT_EQ(page, before);
  // An answer without releases adds nothing, and that is no error.
  r = merge_json_api(page, R"({"info": {}})");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, 0u);
}

// The decisions on that page: releases read off the file names, old enough by the JSON API's
// times, 3.0 passed over for what only the JSON API says.
struct html_index {
  pypi::project_page page;
  index_source source() {
    return {[this](const std::string&) -> result<pypi::project_page> { return page; },
            [](const std::string&, const pypi::version&,
               const pypi::file_entry&) -> result<std::string> {
              return std::string("Metadata-Version: 2.1\nName: demo-html\n\n");
            }};
  }
};

upgrade_policy policy_with_age() {
  config::pins_config pins;
  pins.python = {"3.11"};
  pins.platforms = {"linux-x86_64"};
  pins.min_release_age = std::chrono::seconds(7 * 24h);
  auto p = upgrade_policy::from_config(pins,
                                       std::chrono::sys_days(std::chrono::year(2026) / 6 / 1) + 0s);
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message);
  return *p;
}

requirements_file pinned_at_1() {
  return doc_of("demo-html==1.0 \\\n    --hash=sha256:" + hex_of('a') + "\n");
}

TEST(IndexFallbackTest, WithTheJsonApiTheHtmlOnlyProjectIsDecidedAsAnyOther) {
  html_index idx{html_page()};
  ASSERT_TRUE(merge_json_api(idx.page, json_api()).has_value());
  const auto doc = pinned_at_1();
  auto plan = decide(doc, 0, policy_with_age(), idx.source());
  ASSERT_TRUE(plan.has_value()) << plan.error().message;
  ASSERT_EQ(plan->result, pin_plan::outcome::upgrade) << reasons_of(*plan);
  EXPECT_EQ(plan->change->new_version.str(), "2.0");
  EXPECT_EQ(plan->change->upload_time, "2026-03-01T00:00:00.000000Z");
  EXPECT_NE(reasons_of(*plan).find("3.0: yanked (oops)"), std::string::npos) << reasons_of(*plan);
  // The sdist has no digest on the page: it is to be downloaded, not left out.
  ASSERT_EQ(plan->change->missing_digests.size(), 1u);
  EXPECT_EQ(plan->change->missing_digests[0].url, "http://files.test/p/Demo.HTML-2.0.tar.gz");
}

TEST(IndexFallbackTest, WithoutUploadTimesMinReleaseAgeSkipsWithTheReason) {
  html_index idx{html_page()};
  const auto doc = pinned_at_1();
  auto plan = decide(doc, 0, policy_with_age(), idx.source());
  ASSERT_TRUE(plan.has_value()) << plan.error().message;
  ASSERT_EQ(plan->result, pin_plan::outcome::skipped) << reasons_of(*plan);
  EXPECT_EQ(plan->reasons.front(),
            "not applied: min_release_age (7 days) cannot be checked for 3.0: the index gives no "
            "upload time (nor does its JSON API), so its age is unknown");
  EXPECT_EQ(summary(*plan), "demo-html 1.0 -> 3.0 (skipped)");
  // Without an age rule the times are not needed.
  auto policy = policy_with_age();
  policy.min_release_age = std::chrono::seconds(0);
  plan = decide(doc, 0, policy, idx.source());
  ASSERT_TRUE(plan.has_value()) << plan.error().message;
  EXPECT_EQ(plan->result, pin_plan::outcome::upgrade) << reasons_of(*plan);
  EXPECT_EQ(plan->change->new_version.str(), "3.0");
}

}  // namespace
}  // namespace pantry::orchestrator::pins
