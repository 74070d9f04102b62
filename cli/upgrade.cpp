#include "upgrade.h"

#include "pantry/app/control.h"
#include "pantry/orchestrator/coordinator/api_client.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

namespace pantry::cli {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
namespace http = boost::beast::http;
using orchestrator::coordinator::api_client;

// Whether `pid` has exited: no such process, or a zombie its parent has not reaped yet.
bool exited(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!in || !std::getline(in, stat)) return true;
  auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] == 'Z' ||
         stat[close + 2] == 'X';
}

std::int64_t int_of(const json::object& o, std::string_view key) {
  auto v = o.if_contains(key);
  return v && v->is_int64() ? v->get_int64() : 0;
}

std::string str_of(const json::object& o, std::string_view key) {
  auto v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

int failed(const std::string& message) {
  std::cerr << "pantry: " << message << '\n';
  return 1;
}

}  // namespace

int run_upgrade(const config::config& cfg, const std::optional<std::string>& binary) {
  auto found = app::find_control(cfg.data_dir);
  if (!found) return failed(found.error().message);
  if (!*found) {
    return failed("no `pantry serve` holds the data dir " + cfg.data_dir +
                  " (it has no serve.json naming a live process): nothing to upgrade");
  }
  const app::control_endpoint& ep = **found;
  json::object body;
  if (binary) body["binary"] = fs::absolute(*binary).lexically_normal().string();
  orchestrator::coordinator::api_client_options opt;
  opt.header_timeout = std::chrono::seconds(90);  // the serve waits up to a minute for readiness
  api_client client(ep.url, ep.token, opt);
  http::fields headers;
  headers.set(http::field::content_type, "application/json");
  auto reply = client.call(http::verb::post, "/api/v1/upgrade", json::serialize(body), headers);
  if (!reply) {
    return failed("upgrade of process " + std::to_string(ep.pid) + ": " + reply.error().message);
  }
  boost::system::error_code ec;
  auto v = json::parse(reply->body, ec);
  if (reply->status != 200 || ec || !v.is_object()) {
    return failed("upgrade failed; process " + std::to_string(ep.pid) +
                  " serves on: " + api_client::failure("", *reply).message);
  }
  const auto& o = v.get_object();
  const long old_pid = static_cast<long>(int_of(o, "old_pid"));
  const auto drain = std::chrono::milliseconds(int_of(o, "drain_ms"));
  std::cout << "pantry upgrade: process " << int_of(o, "new_pid") << " (" << str_of(o, "binary")
            << ") serves " << ep.url << " now\n"
            << "pantry upgrade: process " << old_pid << " finishes its in-flight responses (within "
            << drain.count() / 1000 << " s) and exits\n"
            << "pantry upgrade: " << str_of(o, "jobs") << '\n'
            << std::flush;
  // The drain, the services' stop and the last cache flush; a runner's jobs may take a while to
  // stop.
  const auto deadline = std::chrono::steady_clock::now() + drain + std::chrono::seconds(60);
  while (!exited(old_pid)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return failed("process " + std::to_string(old_pid) +
                    " has not exited yet; see its log (the new process serves meanwhile)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cout << "pantry upgrade: process " << old_pid << " has exited\n";
  return 0;
}

}  // namespace pantry::cli
