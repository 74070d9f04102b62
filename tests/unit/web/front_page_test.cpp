#include "pantry/web/front_page.h"

#include "pantry/config/config.h"
#include "pantry/web/layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::web {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A config with two PyPI upstreams (one with credentials in its URL), two OCI upstreams (one
// with a username and password), hosted repositories with a user, and CI tokens and secrets:
// every secret the page must never show.
config::config secretive_config() {
  config::config cfg = config::defaults();
  cfg.pypi.upstreams = {
      {"pypi", "https://pypi.org/simple/", std::nullopt},
      {"private", "https://alice:pypi-s3cret-Pass@pkgs.example.com/simple/", std::nullopt},
  };
  cfg.oci.default_upstream = "docker.io";
  config::oci_upstream hub{"docker.io", "https://registry-1.docker.io", std::nullopt, "", ""};
  config::oci_upstream ghcr{"ghcr.io", "https://ghcr.io", std::nullopt, "bob", "ghp-oci-s3cret"};
  cfg.oci.upstreams = {hub, ghcr};
  cfg.oci.hosted.prefix = "team/";
  cfg.oci.hosted.users = {{"carol", "hosted-user-token-s3cret"}};
  cfg.pypi.hosted = {{"team-py", {"carol"}, {}}};
  cfg.ci.enabled = true;
  cfg.ci.tokens = {{"ci", "ci-token-s3cret-0123456789", config::ci_role::submit}};
  cfg.cache.max_size = 8ull << 30;
  return cfg;
}

const std::vector<std::string> kSecrets = {"pypi-s3cret-Pass", "alice", "ghp-oci-s3cret",
                                           "hosted-user-token-s3cret",
                                           "ci-token-s3cret-0123456789"};

base_address at(std::string authority, std::string scheme = "http") {
  base_address b;
  b.scheme = std::move(scheme);
  b.authority = std::move(authority);
  return b;
}

const client_setting* setting(const std::vector<client_setting>& all, std::string_view id) {
  for (const auto& s : all) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

TEST(FrontPageTest, BaseAddressIsTheHostHeaderWhenItIsAHost) {
  EXPECT_EQ(base_address_of("pantry.internal:8585", "", "127.0.0.1:1").url(),
            "http://pantry.internal:8585");
  EXPECT_EQ(base_address_of("Pantry.Internal", "", "127.0.0.1:1").url(), "http://pantry.internal");
  EXPECT_EQ(base_address_of("10.0.0.5:8585", "https", "x:1").url(), "https://10.0.0.5:8585");
  EXPECT_EQ(base_address_of("[::1]:8585", "", "x:1").url(), "http://[::1]:8585");
  EXPECT_EQ(base_address_of("[::1]:8585", "", "x:1").host(), "[::1]");
  EXPECT_EQ(base_address_of("pantry.internal:8585", "", "x:1").host(), "pantry.internal");
}

TEST(FrontPageTest, BaseAddressRefusesAHostHeaderThatIsNotAHost) {
  for (std::string_view bad :
       {"", "user:pw@pantry:8585", "pantry/x", "pan try", "pantry:", "pantry:99999", "<b>:1",
        "pantry:85\"85", "[::1", "[zz]:1", "pantry:1:2", "a\"onmouseover=\"x"}) {
    EXPECT_EQ(base_address_of(bad, "", "127.0.0.1:8585").authority, "127.0.0.1:8585")
        << "Host: " << bad;
  }
}

TEST(FrontPageTest, WithoutUserInfoDropsCredentialsAndNothingElse) {
  EXPECT_EQ(without_user_info("https://u:p@pkgs.example.com/simple/"),
            "https://pkgs.example.com/simple/");
  EXPECT_EQ(without_user_info("https://token@pkgs.example.com:8443/x/"),
            "https://pkgs.example.com:8443/x/");
  EXPECT_EQ(without_user_info("https://pypi.org/simple/"), "https://pypi.org/simple/");
  EXPECT_EQ(without_user_info("not a url with secret"), "(not a URL)");
}

TEST(FrontPageTest, PythonSettingsNameTheIndexAsReached) {
  auto s = client_settings(secretive_config(), at("pantry.internal:8585"));
  const auto* pip = setting(s, "pip");
  ASSERT_NE(pip, nullptr);
  EXPECT_EQ(pip->text,
            "export PIP_INDEX_URL=http://pantry.internal:8585/simple/\n"
            "export PIP_TRUSTED_HOST=pantry.internal\n");
  const auto* conf = setting(s, "pip-conf");
  ASSERT_NE(conf, nullptr);
  EXPECT_EQ(conf->text,
            "[global]\nindex-url = http://pantry.internal:8585/simple/\n"
            "trusted-host = pantry.internal\n");
  ASSERT_NE(setting(s, "uv"), nullptr);
  EXPECT_THAT(setting(s, "uv")->text,
              HasSubstr("export UV_DEFAULT_INDEX=http://pantry.internal:8585/simple/\n"));
  ASSERT_NE(setting(s, "poetry"), nullptr);
  EXPECT_THAT(setting(s, "poetry")->text,
              HasSubstr("url = \"http://pantry.internal:8585/simple/\""));
}

TEST(FrontPageTest, TwineSettingsNameEachHostedIndexAsReached) {
  auto s = client_settings(secretive_config(), at("pantry.internal:8585"));
  const auto* twine = setting(s, "twine-team-py");
  ASSERT_NE(twine, nullptr);
  EXPECT_EQ(twine->text,
            "[distutils]\nindex-servers = team-py\n\n[team-py]\n"
            "repository = http://pantry.internal:8585/team-py/\n"
            "username = <a user of oci.hosted.users>\npassword = <its token>\n");
  auto page = make_front_page(secretive_config(), at("pantry.internal:8585"), "0.1.0");
  EXPECT_THAT(render_html(page),
              HasSubstr("twine uploads to <code>http://pantry.internal:8585/team-py/</code>"));
  EXPECT_THAT(render_json(page),
              HasSubstr("\"pypi_hosted\":[{\"name\":\"team-py\",\"repository_url\":"
                        "\"http://pantry.internal:8585/team-py/\"}]"));
}

TEST(FrontPageTest, ContainerSettingsMirrorEachUpstream) {
  auto s = client_settings(secretive_config(), at("10.1.2.3:8585"));
  const auto* dockerd = setting(s, "dockerd");
  ASSERT_NE(dockerd, nullptr);
  EXPECT_EQ(dockerd->text,
            "{\n  \"registry-mirrors\": [\"http://10.1.2.3:8585\"],\n"
            "  \"insecure-registries\": [\"10.1.2.3:8585\"]\n}\n");
  const auto* podman = setting(s, "podman");
  ASSERT_NE(podman, nullptr);
  EXPECT_EQ(podman->text,
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n"
            "[[registry.mirror]]\nlocation = \"10.1.2.3:8585\"\ninsecure = true\n\n"
            "[[registry]]\nprefix = \"ghcr.io\"\nlocation = \"ghcr.io\"\n"
            "[[registry.mirror]]\nlocation = \"10.1.2.3:8585/ghcr.io\"\ninsecure = true\n");
  const auto* hub = setting(s, "containerd-docker.io");
  ASSERT_NE(hub, nullptr);
  EXPECT_EQ(hub->where, "/etc/containerd/certs.d/docker.io/hosts.toml");
  EXPECT_EQ(hub->text,
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://10.1.2.3:8585\"]\n"
            "  capabilities = [\"pull\", \"resolve\"]\n");
  ASSERT_NE(setting(s, "containerd-ghcr.io"), nullptr);
}

TEST(FrontPageTest, HttpsBehindAProxyNeedsNoInsecureLines) {
  auto s = client_settings(secretive_config(), at("pantry.example.com", "https"));
  for (const auto& c : s) {
    EXPECT_THAT(c.text, Not(HasSubstr("insecure"))) << c.id;
    EXPECT_THAT(c.text, Not(HasSubstr("trusted-host"))) << c.id;
    EXPECT_THAT(c.text, Not(HasSubstr("TRUSTED_HOST"))) << c.id;
  }
  EXPECT_THAT(setting(s, "pip")->text,
              HasSubstr("PIP_INDEX_URL=https://pantry.example.com/simple/"));
}

TEST(FrontPageTest, DockerdMirrorOnlyWhenTheDefaultUpstreamIsDockerHub) {
  auto cfg = secretive_config();
  cfg.oci.default_upstream = "ghcr.io";
  EXPECT_EQ(setting(client_settings(cfg, at("p:1")), "dockerd"), nullptr);
}

TEST(FrontPageTest, NeitherFormShowsASecret) {
  auto cfg = secretive_config();
  auto page = make_front_page(cfg, at("pantry.internal:8585"), "0.1.0");
  page.upstreams[1].last_failure = system_clock::now();
  page.upstreams[1].failure = "GET https://pkgs.example.com/simple/x/: connection refused";
  const std::string html = render_html(page);
  const std::string json = render_json(page);
  for (const auto& secret : kSecrets) {
    EXPECT_THAT(html, Not(HasSubstr(secret))) << "the HTML shows " << secret;
    EXPECT_THAT(json, Not(HasSubstr(secret))) << "the JSON shows " << secret;
  }
  EXPECT_THAT(html, HasSubstr("https://pkgs.example.com/simple/"));
  EXPECT_THAT(html, HasSubstr("(with credentials)"));
  EXPECT_THAT(json, HasSubstr("\"url\":\"https://pkgs.example.com/simple/\""));
  EXPECT_THAT(json, HasSubstr("\"credentials\":true"));
}

TEST(FrontPageTest, RemoteRunnersCoordinatorIsShownWithoutItsToken) {
  auto cfg = secretive_config();
  cfg.ci.runner_of.url = "https://runner:coord-s3cret@ci.example.com:8585";
  cfg.ci.runner_of.token = "runner-token-s3cret-0123";
  auto page = make_front_page(cfg, at("p:1"), "0.1.0");
  EXPECT_EQ(page.runner_of, "https://ci.example.com:8585");
  for (const auto& out : {render_html(page), render_json(page)}) {
    EXPECT_THAT(out, Not(HasSubstr("coord-s3cret")));
    EXPECT_THAT(out, Not(HasSubstr("runner-token-s3cret")));
    EXPECT_THAT(out, HasSubstr("https://ci.example.com:8585"));
  }
}

TEST(FrontPageTest, HtmlEscapesEveryString) {
  front_page page;
  page.version = "<script>alert(1)</script>";
  page.base = at("evil\"><img src=x>");
  page.upstreams.push_back({"pypi", "n<a>", "https://h/<x>", false, std::nullopt,
                            system_clock::now(), "<b>bad</b> & \"worse\""});
  page.settings.push_back({"id\"", "client<", "where>", "text </code></pre><script>"});
  page.ci = true;
  const std::string html = render_html(page);
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, Not(HasSubstr("<img")));
  EXPECT_THAT(html, Not(HasSubstr("<b>bad")));
  EXPECT_THAT(html, Not(HasSubstr("<a>")));
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(html, HasSubstr("&lt;b&gt;bad&lt;/b&gt; &amp; &quot;worse&quot;"));
  EXPECT_THAT(html, HasSubstr("text &lt;/code&gt;&lt;/pre&gt;&lt;script&gt;"));
}

TEST(FrontPageTest, HtmlHasTheSectionsAndNoScriptsOrExternalAssets) {
  auto page = make_front_page(secretive_config(), at("pantry.internal:8585"), "0.1.0");
  page.cache.bytes = 3 << 20;
  page.cache.hits = 41;
  page.cache.misses = 7;
  const std::string html = render_html(page);
  EXPECT_THAT(html, HasSubstr("<!DOCTYPE html>"));
  for (std::string_view id : {"serves", "clients", "upstreams", "cache", "ci"}) {
    EXPECT_THAT(html, HasSubstr("<section id=\"" + std::string(id) + "\">"));
  }
  EXPECT_THAT(html, HasSubstr("3.0 MiB of 8.0 GiB quota"));
  EXPECT_THAT(html, HasSubstr("<th>hits since start</th><td>41</td>"));
  EXPECT_THAT(html, HasSubstr("<th>misses since start</th><td>7</td>"));
  EXPECT_THAT(html, HasSubstr("http://pantry.internal:8585/api/v1/"));
  EXPECT_THAT(html, HasSubstr("<a href=\"/\" aria-current=\"page\">Overview</a>"));
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, Not(HasSubstr("src=")));
  EXPECT_THAT(html, Not(HasSubstr("<link")));
  // twine's settings only with a hosted index to upload to.
  EXPECT_THAT(html, HasSubstr("twine (team-py)"));
  config::config no_hosted = secretive_config();
  no_hosted.pypi.hosted.clear();
  EXPECT_THAT(render_html(make_front_page(no_hosted, at("pantry.internal:8585"), "0.1.0")),
              Not(HasSubstr("twine")));
}

TEST(FrontPageTest, JsonCarriesTheSameFacts) {
  auto page = make_front_page(secretive_config(), at("pantry.internal:8585"), "0.1.0");
  page.cache.hits = 2;
  const std::string json = render_json(page);
  EXPECT_THAT(json, HasSubstr("\"index_url\":\"http://pantry.internal:8585/simple/\""));
  EXPECT_THAT(json, HasSubstr("\"api\":\"http://pantry.internal:8585/api/v1/\""));
  EXPECT_THAT(json, HasSubstr("\"hits\":2"));
  EXPECT_THAT(json, HasSubstr("\"last_success\":null"));
  EXPECT_THAT(json, HasSubstr("\"id\":\"containerd-ghcr.io\""));
}

TEST(FrontPageTest, JsonOnlyWhenAskedForBeforeHtml) {
  EXPECT_FALSE(wants_json({}));
  EXPECT_FALSE(wants_json({"*/*"}));
  EXPECT_FALSE(
      wants_json({"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"}));
  EXPECT_TRUE(wants_json({"application/json"}));
  EXPECT_TRUE(wants_json({"application/json, */*;q=0.5"}));
  EXPECT_TRUE(wants_json({"text/html;q=0.5", "application/json"}));
  EXPECT_FALSE(wants_json({"application/json;q=0.5, text/html"}));
  EXPECT_FALSE(wants_json({"application/json;q=0"}));
}

TEST(FrontPageTest, ReadyWhileTheCacheReadsEvenWithAFailingUpstream) {
  const auto t0 = system_clock::from_time_t(1'800'000'000);
  auto ups = upstreams_of(secretive_config());
  ASSERT_GE(ups.size(), 3u);
  ups[0].last_success = t0;  // up
  ups[1].last_success = t0;  // failed after it last answered
  ups[1].last_failure = t0 + std::chrono::seconds(5);
  ups[1].failure = "connect to 10.0.0.9:443: connection refused";
  const readiness r = assess_readiness(ups, "");
  EXPECT_TRUE(r.ready);
  EXPECT_THAT(r.json, HasSubstr("\"ready\":true"));
  EXPECT_THAT(r.json, HasSubstr("\"degraded\":true"));
  EXPECT_THAT(r.json, HasSubstr("\"cache\":\"ok\""));
  EXPECT_THAT(r.json, HasSubstr("\"state\":\"up\""));
  EXPECT_THAT(r.json, HasSubstr("\"state\":\"failing\""));
  EXPECT_THAT(r.json, HasSubstr("\"state\":\"unknown\""));
  EXPECT_THAT(r.json, HasSubstr("connection refused"));
  for (const auto& secret : kSecrets)
    EXPECT_THAT(r.json, Not(HasSubstr(secret)));

  // Answered again after the failure: up, and no longer degraded.
  ups[1].last_success = t0 + std::chrono::seconds(9);
  ups.resize(2);
  const readiness again = assess_readiness(ups, "");
  EXPECT_THAT(again.json, HasSubstr("\"degraded\":false")) << again.json;
}

TEST(FrontPageTest, NotReadyWhenTheCacheCannotBeRead) {
  const readiness r = assess_readiness(upstreams_of(secretive_config()),
                                       "the cache cannot be read: mdb_txn_begin: I/O error");
  EXPECT_FALSE(r.ready);
  EXPECT_THAT(r.json, HasSubstr("\"ready\":false"));
  EXPECT_THAT(r.json,
              HasSubstr("\"cache\":\"the cache cannot be read: mdb_txn_begin: I/O error\""));
}

TEST(FrontPageTest, ReadinessReportsTheLastReloadAndStaysReadyWhenOneIsRefused) {
  const auto ups = upstreams_of(secretive_config());
  const readiness never = assess_readiness(ups, "");
  EXPECT_THAT(never.json, HasSubstr("\"config\":{\"valid\":true,\"last_reload\":null}"))
      << never.json;

  config::reload_report refused;
  refused.outcome = config::reload_outcome::refused;
  refused.source = "/etc/pantry.yaml";
  refused.error = "/etc/pantry.yaml:4:14: cache.max_size: \"50 GB\" is not a size";
  refused.at = system_clock::from_time_t(1'800'000'000);
  const readiness r = assess_readiness(ups, "", refused);
  EXPECT_TRUE(r.ready) << r.json;  // the config that runs was checked and still serves
  EXPECT_THAT(r.json, HasSubstr("\"valid\":false")) << r.json;
  EXPECT_THAT(r.json, HasSubstr("\"outcome\":\"refused\"")) << r.json;
  EXPECT_THAT(r.json, HasSubstr("/etc/pantry.yaml:4:14: cache.max_size:")) << r.json;
  EXPECT_THAT(r.json, HasSubstr("\"at\":\"2027-01-15T08:00:00Z\"")) << r.json;

  config::reload_report kept;
  kept.outcome = config::reload_outcome::needs_restart;
  kept.source = "/etc/pantry.yaml";
  kept.changed = {"oci.hosted.users"};
  kept.needs_restart = {{"listen", "0.0.0.0:8585", "0.0.0.0:9090"}};
  const std::string json = reload_json(kept);
  EXPECT_THAT(json, HasSubstr("\"changed\":[\"oci.hosted.users\"]")) << json;
  EXPECT_THAT(json, HasSubstr("\"needs_restart\":[{\"key\":\"listen\",\"running\":\"0.0.0.0:"
                              "8585\",\"wanted\":\"0.0.0.0:9090\"}]"))
      << json;
  EXPECT_THAT(json, Not(HasSubstr("\"error\""))) << json;
  EXPECT_THAT(assess_readiness(ups, "", kept).json, HasSubstr("\"valid\":true"));
}

}  // namespace
}  // namespace pantry::web
