#include "pipelines.h"

#include "pantry/app/control.h"
#include "pantry/config/config.h"
#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/orchestrator/coordinator/pipeline_spec.h"
#include "pantry/orchestrator/coordinator/source.h"
#include "pantry/orchestrator/coordinator/submit.h"
#include "session.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace pantry::cli {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
namespace http = boost::beast::http;
using orchestrator::coordinator::api_client;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitBadSpec = 2;

// The coordinator's URL and token, and the in-process pantry when one had to be started.
struct connection {
  std::string url;
  std::string token;
  std::unique_ptr<session> local;
};

result<config::config> load_config(const coordinator_options& w) {
  config::config cfg = config::defaults();
  if (w.config_file) {
    auto loaded = config::load_file(*w.config_file);
    if (!loaded) return loaded.error();
    cfg = std::move(*loaded);
  }
  if (w.data_dir) cfg.data_dir = *w.data_dir;
  return cfg;
}

// --url/--token, else $PANTRY_URL/$PANTRY_TOKEN, else the serve of the data dir; with
// `may_start`, a pantry in this process when none serves it (it runs for as long as the command).
result<connection> connect(const coordinator_options& w, bool may_start) {
  connection c;
  const char* env_url = std::getenv("PANTRY_URL");
  const char* env_token = std::getenv("PANTRY_TOKEN");
  if (w.url || (env_url && *env_url)) {
    c.url = w.url ? *w.url : env_url;
    while (!c.url.empty() && c.url.back() == '/')
      c.url.pop_back();
    if (w.token) {
      c.token = *w.token;
    } else if (env_token) {
      c.token = env_token;
    } else {
      return error(errc::invalid_argument,
                   "--url " + c.url + " needs a token of its ci.tokens: --token or PANTRY_TOKEN");
    }
    return c;
  }
  auto cfg = load_config(w);
  if (!cfg) return cfg.error();
  if (!may_start) {
    auto found = app::find_control(cfg->data_dir);
    if (!found) return found.error();
    if (!*found) {
      return error(errc::not_found,
                   "no `pantry serve` holds the data dir " + cfg->data_dir +
                       "; start one, or give --url and --token of a pantry that runs");
    }
    c.url = (*found)->url;
    c.token = (*found)->token;
    return c;
  }
  spdlog::set_level(spdlog::level::warn);
  auto s = session::open(*cfg);
  if (!s) return s.error();
  c.url = (*s)->endpoint().url;
  c.token = (*s)->endpoint().token;
  c.local = std::move(*s);
  return c;
}

// The server's {"error": …}, or its body.
std::string message_of(const api_client::reply& r) {
  boost::system::error_code ec;
  auto v = json::parse(r.body, ec);
  if (!ec && v.is_object()) {
    if (auto e = v.get_object().if_contains("error"); e && e->is_string()) {
      return std::string(e->get_string());
    }
  }
  std::string b = r.body.substr(0, 500);
  while (!b.empty() && b.back() == '\n')
    b.pop_back();
  return "pantry answered " + std::to_string(r.status) + (b.empty() ? "" : ": " + b);
}

int fail(const std::string& message) {
  std::cerr << "pantry: " << message << '\n';
  return kExitFailed;
}

const char* colour_of(const std::string& name) {
  static const char* kColours[] = {"\033[36m", "\033[35m", "\033[34m", "\033[33m", "\033[32m"};
  std::size_t h = std::hash<std::string>{}(name);
  return kColours[h % (sizeof kColours / sizeof kColours[0])];
}

std::string str_of(const json::object& o, std::string_view k) {
  auto v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// Streams the pipeline's NDJSON log; returns the pipeline's final state.
result<std::string> follow_pipeline(api_client& client, const std::string& id, bool colour) {
  std::string pending;
  std::string final_state;
  std::size_t width = 0;
  auto status = client.stream(http::verb::get, "/api/v1/pipelines/" + id + "/log?follow=1", {},
                              [&](std::string_view bytes) {
                                pending.append(bytes);
                                std::size_t start = 0;
                                for (auto nl = pending.find('\n', start); nl != std::string::npos;
                                     nl = pending.find('\n', start)) {
                                  std::string_view line(pending.data() + start, nl - start);
                                  start = nl + 1;
                                  boost::system::error_code ec;
                                  auto v = json::parse(line, ec);
                                  if (ec || !v.is_object()) continue;
                                  const auto& o = v.get_object();
                                  auto type = str_of(o, "type");
                                  auto name = str_of(o, "name");
                                  width = std::max(width, name.size());
                                  std::string prefix = name;
                                  prefix.resize(std::max(width, prefix.size()), ' ');
                                  if (colour) prefix = colour_of(name) + prefix + "\033[0m";
                                  if (type == "line") {
                                    std::cout << prefix << " | " << str_of(o, "text") << '\n';
                                  } else if (type == "job") {
                                    auto reason = str_of(o, "reason");
                                    std::cerr << prefix << " : " << str_of(o, "state")
                                              << (reason.empty() ? "" : " (" + reason + ")")
                                              << '\n';
                                  } else if (type == "end") {
                                    final_state = str_of(o, "state");
                                    auto reason = str_of(o, "reason");
                                    std::cerr << "pantry: pipeline " << id << " " << final_state
                                              << (reason.empty() ? "" : ": " + reason) << '\n';
                                  }
                                }
                                pending.erase(0, start);
                                std::cout.flush();
                                return true;
                              });
  if (!status) return status.error();
  if (final_state.empty()) {
    return error(errc::io_error, "the pipeline's log ended before its result");
  }
  return final_state;
}

}  // namespace

int submit_command(const submit_options& o) {
  fs::path dir = o.dir;
  fs::path spec_path = fs::path(o.file).is_absolute() ? fs::path(o.file) : dir / o.file;
  std::ifstream in(spec_path, std::ios::binary);
  if (!in) {
    std::cerr << "pantry: cannot read " << spec_path.string()
              << "; give the pipeline's file with -f or run in its directory (-C DIR)\n";
    return kExitBadSpec;
  }
  std::ostringstream text;
  text << in.rdbuf();
  // Checked here first: a bad file is exit status 2 without a round trip.
  auto spec = orchestrator::coordinator::parse_pipeline_spec(text.str(), o.file);
  if (!spec) {
    std::cerr << spec.error().message << '\n';
    return kExitBadSpec;
  }
  json::object body;
  body["spec"] = text.str();
  body["spec_file"] = o.file;
  std::error_code ec;
  body["project"] =
      o.project ? *o.project : fs::weakly_canonical(fs::absolute(dir), ec).filename().string();
  if (o.patch) body["patch"] = *o.patch;
  std::string commit = o.commit ? *o.commit : "";
  if (!o.commit && !o.git) commit = orchestrator::coordinator::head_commit(dir).value_or("");
  if (!commit.empty()) body["commit"] = commit;

  auto conn = connect(o.where, o.wait);
  if (!conn) return fail(conn.error().message);
  api_client client(conn->url, conn->token);

  if (o.git) {
    json::object source{{"git", *o.git}, {"commit", commit}};
    if (o.auth_secret) source["auth_secret"] = *o.auth_secret;
    if (o.base) source["base"] = *o.base;
    body["source"] = std::move(source);
  } else {
    // The working tree, packed reproducibly: an unchanged tree has the same digest and is not
    // sent again.
    fs::path archive =
        fs::temp_directory_path() / ("pantry-submit-" + std::to_string(::getpid()) + ".tar.zst");
    auto packed = orchestrator::coordinator::pack_tree(dir, archive);
    if (!packed) return fail(packed.error().message);
    std::string digest = packed->sha256.str();
    auto sent = orchestrator::coordinator::send_tree(client, archive, digest);
    fs::remove(archive, ec);
    if (!sent) return fail(sent.error().message);
    const std::string files = std::to_string(packed->stats.files) + " files";
    if (*sent) {
      std::cerr << "pantry: tree " << digest << " (" << files << ") sent, " << packed->size
                << " bytes compressed\n";
    } else {
      std::cerr << "pantry: tree " << digest << " (" << files << ") is in pantry already\n";
    }
    body["source"] = json::object{{"tree", digest}};
  }
  auto submitted = orchestrator::coordinator::submit_pipeline(client, json::serialize(body));
  if (!submitted) {
    if (submitted.error().is(errc::invalid_argument)) {
      std::cerr << submitted.error().message << '\n';
      return kExitBadSpec;
    }
    return fail(submitted.error().message);
  }
  const std::string id = std::to_string(submitted->id);
  std::cout << submitted->url << '\n';
  std::cout.flush();
  if (!o.wait) return kExitOk;
  auto state = follow_pipeline(client, id, o.color && ::isatty(1));
  if (!state) return fail(state.error().message);
  return *state == "passed" ? kExitOk : kExitFailed;
}

int jobs_command(const jobs_options& o) {
  auto conn = connect(o.where, false);
  if (!conn) return fail(conn.error().message);
  api_client client(conn->url, conn->token);
  std::string path = "/api/v1/jobs";
  if (o.project) path += "?project=" + *o.project;
  auto r = client.call(http::verb::get, path);
  if (!r) return fail(r.error().message);
  if (r->status != 200) return fail(message_of(*r));
  boost::system::error_code ec;
  auto v = json::parse(r->body, ec);
  if (ec || !v.is_object() || !v.get_object().contains("jobs")) {
    return fail("pantry answered something that is not a job list");
  }
  std::printf("%-8s %-9s %-20s %-10s %-24s %-10s %s\n", "JOB", "PIPELINE", "PROJECT", "PATCH",
              "NAME", "STATE", "REASON");
  for (const auto& j : v.get_object().at("jobs").as_array()) {
    const auto& o2 = j.as_object();
    auto num = [&](std::string_view k) {
      auto x = o2.if_contains(k);
      return x && x->is_number() ? std::to_string(x->to_number<std::uint64_t>()) : std::string("?");
    };
    std::printf("%-8s %-9s %-20s %-10s %-24s %-10s %s\n", num("id").c_str(),
                num("pipeline").c_str(), str_of(o2, "project").c_str(), str_of(o2, "patch").c_str(),
                str_of(o2, "name").c_str(), str_of(o2, "state").c_str(),
                str_of(o2, "reason").c_str());
  }
  return kExitOk;
}

int logs_command(const logs_options& o) {
  auto conn = connect(o.where, false);
  if (!conn) return fail(conn.error().message);
  api_client client(conn->url, conn->token);
  std::string path = "/api/v1/jobs/" + o.job + "/log?";
  if (o.follow) path += "follow=1&";
  auto encode = [](const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
        out += static_cast<char>(c);
      } else {
        char b[4];
        std::snprintf(b, sizeof b, "%%%02X", c);
        out += b;
      }
    }
    return out;
  };
  if (o.grep) path += "grep=" + encode(*o.grep) + "&";
  if (o.step) path += "step=" + encode(*o.step) + "&";
  path.pop_back();
  auto status = client.stream(http::verb::get, path, {}, [&](std::string_view bytes) {
    std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::cout.flush();
    return true;
  });
  if (!status) return fail(status.error().message);
  return kExitOk;
}

int cancel_command(const cancel_options& o) {
  auto conn = connect(o.where, false);
  if (!conn) return fail(conn.error().message);
  api_client client(conn->url, conn->token);
  std::string path = std::string(o.job ? "/api/v1/jobs/" : "/api/v1/pipelines/") + o.id + "/cancel";
  auto r = client.call(http::verb::post, path);
  if (!r) return fail(r.error().message);
  if (r->status != 200) return fail(message_of(*r));
  std::cout << (o.job ? "job " : "pipeline ") << o.id << " cancelled\n";
  return kExitOk;
}

int artifacts_command(const artifacts_options& o) {
  auto conn = connect(o.where, false);
  if (!conn) return fail(conn.error().message);
  api_client client(conn->url, conn->token);
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return fail("creating " + o.out_dir + ": " + ec.message());
  fs::path archive = fs::path(o.out_dir) / (".pantry-artifacts-" + o.job + ".tar.zst");
  auto status = client.download("/api/v1/jobs/" + o.job + "/artifacts", archive);
  if (!status) return fail(status.error().message);
  fs::path staging = fs::path(o.out_dir) / (".pantry-artifacts-" + o.job);
  auto unpacked = orchestrator::coordinator::unpack_tree(archive, staging);
  fs::remove(archive, ec);
  if (!unpacked) {
    fs::remove_all(staging, ec);
    return fail(unpacked.error().message);
  }
  std::size_t files = 0;
  for (fs::directory_iterator it(staging, ec), end; !ec && it != end; it.increment(ec)) {
    fs::rename(it->path(), fs::path(o.out_dir) / it->path().filename(), ec);
    if (ec) return fail("moving " + it->path().string() + ": " + ec.message());
    ++files;
  }
  fs::remove_all(staging, ec);
  std::cout << "job " << o.job << ": artifacts in " << o.out_dir << '\n';
  return kExitOk;
}

namespace {

// Milliseconds since the Unix epoch as "2026-12-07 00:12:03Z"; "-" for null or 0.
std::string time_of(const json::value* v) {
  if (!v || !v->is_number()) return "-";
  auto ms = v->to_number<std::int64_t>();
  if (ms <= 0) return "-";
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M:%SZ", &tm);
  return b;
}

std::string count_of(const json::object& o, std::string_view k) {
  auto v = o.if_contains(k);
  return v && v->is_number() ? std::to_string(v->to_number<std::uint64_t>()) : std::string("?");
}

std::string seconds_of(const json::object& o, std::string_view k) {
  auto v = o.if_contains(k);
  if (!v || !v->is_number()) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", v->to_number<double>());
  return b;
}

const json::array* array_of(const json::object& o, std::string_view k) {
  auto v = o.if_contains(k);
  return v ? v->if_array() : nullptr;
}

void print_flaky(const json::array& flaky) {
  std::printf("%-6s %-6s %-6s %-21s %s\n", "FLAKES", "RUNS", "RATE", "LAST FLAKED", "TEST");
  for (const auto& e : flaky) {
    const auto* t = e.if_object();
    if (!t) continue;
    auto rate = t->if_contains("rate");
    char r[16];
    std::snprintf(r, sizeof r, "%.0f%%",
                  rate && rate->is_number() ? rate->to_number<double>() * 100 : 0.0);
    std::printf("%-6s %-6s %-6s %-21s %s\n", count_of(*t, "flakes").c_str(),
                count_of(*t, "runs").c_str(), r, time_of(t->if_contains("last_flaked")).c_str(),
                str_of(*t, "id").c_str());
    if (const auto* evidence = array_of(*t, "evidence")) {
      for (const auto& ev : *evidence) {
        const auto* x = ev.if_object();
        if (!x) continue;
        std::string commit = str_of(*x, "commit");
        if (str_of(*x, "kind") == "rerun") {
          std::printf("       failed, then passed its re-run in job %s",
                      count_of(*x, "failed_job").c_str());
        } else {
          std::printf("       failed in job %s, passed in job %s",
                      count_of(*x, "failed_job").c_str(), count_of(*x, "passed_job").c_str());
        }
        std::printf("%s\n", commit.empty() ? "" : (" on commit " + commit.substr(0, 12)).c_str());
      }
    }
  }
}

void print_tests(const json::array& tests) {
  std::printf("%-7s %-5s %-5s %-5s %-5s %-10s %-21s %s\n", "LAST", "RUNS", "PASS", "FAIL", "SKIP",
              "SECONDS", "LAST FAILED", "TEST");
  for (const auto& e : tests) {
    const auto* t = e.if_object();
    if (!t) continue;
    std::printf("%-7s %-5s %-5s %-5s %-5s %-10s %-21s %s\n", str_of(*t, "last_outcome").c_str(),
                count_of(*t, "runs").c_str(), count_of(*t, "passes").c_str(),
                count_of(*t, "failures").c_str(), count_of(*t, "skips").c_str(),
                seconds_of(*t, "seconds").c_str(), time_of(t->if_contains("last_failed")).c_str(),
                str_of(*t, "id").c_str());
  }
}

void print_quarantined(const json::array& quarantined) {
  std::printf("%-7s %-21s %-12s %s\n", "SOURCE", "SINCE", "BY", "TEST");
  for (const auto& e : quarantined) {
    const auto* t = e.if_object();
    if (!t) continue;
    const std::string by = str_of(*t, "by");
    std::printf("%-7s %-21s %-12s %s\n", str_of(*t, "source").c_str(),
                time_of(t->if_contains("since")).c_str(), by.empty() ? "-" : by.c_str(),
                str_of(*t, "id").c_str());
  }
}

// The project given, else the current directory's name (as submit's default).
std::string project_or_cwd(const std::optional<std::string>& given) {
  if (given) return *given;
  std::error_code ec;
  return fs::weakly_canonical(fs::current_path(ec), ec).filename().string();
}

}  // namespace

int tests_command(const tests_options& o) {
  const std::string project = project_or_cwd(o.project);
  auto conn = connect(o.where, false);
  if (!conn) return fail(conn.error().message);
  api_client client(conn->url, conn->token);
  const std::optional<std::string>& change = o.quarantine ? o.quarantine : o.unquarantine;
  if (o.quarantined || change) {
    std::string path = "/api/v1/projects/" + project + "/quarantine";
    if (change) path += "?test=" + boost::urls::encode(*change, boost::urls::unreserved_chars);
    auto method = !change ? http::verb::get : o.quarantine ? http::verb::put : http::verb::delete_;
    auto r = client.call(method, path);
    if (!r) return fail(r.error().message);
    if (r->status != 200) return fail(message_of(*r));
    boost::system::error_code jec;
    auto v = json::parse(r->body, jec);
    const auto* list = !jec && v.is_object() ? array_of(v.get_object(), "quarantined") : nullptr;
    if (!list) return fail("pantry answered something that is not a quarantine list");
    if (change) {
      const auto* changed = v.get_object().if_contains("changed");
      const bool did = changed && changed->is_bool() && changed->get_bool();
      std::printf("%s %s quarantine%s\n", change->c_str(), o.quarantine ? "is in" : "is out of",
                  did ? "" : " (it was already)");
    }
    std::printf("project %s: %zu quarantined tests\n", project.c_str(), list->size());
    if (!list->empty()) print_quarantined(*list);
    return kExitOk;
  }
  std::string path = "/api/v1/projects/" + project + "/tests";
  if (o.flaky) path += "?flaky=1";
  if (o.slowest) path += "?slowest=" + std::to_string(*o.slowest);
  auto r = client.call(http::verb::get, path);
  if (!r) return fail(r.error().message);
  if (r->status != 200) return fail(message_of(*r));
  boost::system::error_code jec;
  auto v = json::parse(r->body, jec);
  if (jec || !v.is_object()) return fail("pantry answered something that is not a test list");
  const auto& answer = v.get_object();
  const std::string runs = count_of(answer, "runs");
  if (o.flaky) {
    const auto* flaky = array_of(answer, "flaky");
    if (!flaky) return fail("pantry answered something that is not a flaky test list");
    std::printf("project %s: %zu flaky tests in %s runs\n", project.c_str(), flaky->size(),
                runs.c_str());
    if (!flaky->empty()) print_flaky(*flaky);
    return kExitOk;
  }
  const auto* tests = array_of(answer, "tests");
  if (!tests) return fail("pantry answered something that is not a test list");
  if (o.slowest) {
    std::printf("project %s: the %zu slowest tests in %s runs\n", project.c_str(), tests->size(),
                runs.c_str());
  } else {
    std::size_t failing = 0;
    for (const auto& t : *tests) {
      if (const auto* x = t.if_object()) {
        auto last = str_of(*x, "last_outcome");
        if (last == "failed" || last == "error") ++failing;
      }
    }
    std::printf("project %s: %zu tests in %s runs, %zu failing in their last run\n",
                project.c_str(), tests->size(), runs.c_str(), failing);
  }
  if (!tests->empty()) print_tests(*tests);
  return kExitOk;
}

namespace {

// "2.5%", or "-" for null.
std::string percent_text(const json::object& o, std::string_view k) {
  auto v = o.if_contains(k);
  if (!v || !v->is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", v->to_number<double>() * 100);
  return buf;
}

}  // namespace

int measures_command(const measures_options& o) {
  const std::string project = project_or_cwd(o.project);
  auto conn = connect(o.where, false);
  if (!conn) return fail(conn.error().message);
  api_client client(conn->url, conn->token);
  auto r = client.call(http::verb::get, "/api/v1/projects/" + project + "/measures");
  if (!r) return fail(r.error().message);
  if (r->status != 200) return fail(message_of(*r));
  boost::system::error_code jec;
  auto v = json::parse(r->body, jec);
  if (jec || !v.is_object() || !v.get_object().contains("pipelines")) {
    return fail("pantry answered something that is not a project's measures");
  }
  const auto& m = v.get_object();
  auto secs = [&m](std::string_view k) {
    std::string s = seconds_of(m, k);
    return s == "-" ? s : s + " s";
  };
  std::printf("project %s: %s pipelines (%s passed, %s failed, %s cancelled) of the last %s days\n",
              project.c_str(), count_of(m, "pipelines").c_str(), count_of(m, "passed").c_str(),
              count_of(m, "failed").c_str(), count_of(m, "cancelled").c_str(),
              count_of(m, "window_days").c_str());
  std::printf("  time to red        %s (median)\n", secs("median_time_to_red").c_str());
  std::printf("  time to green      %s (median)\n", secs("median_time_to_green").c_str());
  std::printf("  queue wait         %s (median per pipeline)\n", secs("median_queue_wait").c_str());
  std::printf("  flaky tests        %s of %s tests run (%s)\n", count_of(m, "flaky_tests").c_str(),
              count_of(m, "tests").c_str(), percent_text(m, "flaky_test_rate").c_str());
  std::printf("  red only by flakes %s of %s red pipelines (%s)\n",
              count_of(m, "red_only_flaky").c_str(), count_of(m, "failed").c_str(),
              percent_text(m, "red_only_flaky_rate").c_str());
  std::printf("  runner CPU         %s\n", secs("cpu_seconds").c_str());
  std::printf("  saved              %s by supersede, %s by stopping early\n",
              secs("saved_by_supersede").c_str(), secs("saved_by_stopping_early").c_str());
  std::printf("  from pantry's cache %s of the jobs' pip and image requests, %s of their bytes\n",
              percent_text(m, "cache_hit_ratio").c_str(),
              percent_text(m, "cache_byte_hit_ratio").c_str());
  return kExitOk;
}

}  // namespace pantry::cli

namespace pantry::cli {
namespace {

template <class Options>
result<int> dispatch(result<Options> parsed, int (*command)(const Options&)) {
  if (!parsed) return parsed.error();
  return command(*parsed);
}

}  // namespace

std::optional<result<int>> pipeline_command(const std::string& command,
                                            const std::vector<std::string>& args) {
  if (command == "submit") return dispatch(parse_submit_args(args), &submit_command);
  if (command == "jobs") return dispatch(parse_jobs_args(args), &jobs_command);
  if (command == "logs") return dispatch(parse_logs_args(args), &logs_command);
  if (command == "cancel") return dispatch(parse_cancel_args(args), &cancel_command);
  if (command == "artifacts") return dispatch(parse_artifacts_args(args), &artifacts_command);
  if (command == "tests") return dispatch(parse_tests_args(args), &tests_command);
  if (command == "ci" && !args.empty() && args[0] == "measures") {
    return dispatch(parse_measures_args({args.begin() + 1, args.end()}), &measures_command);
  }
  return std::nullopt;
}

}  // namespace pantry::cli
