#include "reload.h"

#include "pantry/app/control.h"
#include "pantry/orchestrator/coordinator/api_client.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <filesystem>
#include <iostream>

namespace pantry::cli {
namespace {

namespace json = boost::json;
namespace http = boost::beast::http;
using orchestrator::coordinator::api_client;

std::string text_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

int run_reload(const std::optional<std::string>& config_file,
               const std::optional<std::string>& data_dir) {
  constexpr int kOk = 0, kFailed = 1;
  std::string dir = config::defaults().data_dir;
  if (data_dir) {
    dir = *data_dir;
  } else if (config_file) {
    auto loaded = config::load_file(*config_file);
    if (!loaded) {
      std::cerr << "pantry: reload refused here (the serve was not asked; with --data-dir it "
                   "would refuse it too):\n"
                << loaded.error().message << '\n';
      return kFailed;
    }
    dir = loaded->data_dir;
  }
  const std::optional<std::string>& file = config_file;
  auto found = app::find_control(dir);
  if (!found) {
    std::cerr << "pantry: " << found.error().message << '\n';
    return kFailed;
  }
  if (!*found) {
    std::cerr << "pantry: no `pantry serve` holds the data dir " << dir
              << "; nothing to reload (give --config or --data-dir of the one that runs)\n";
    return kFailed;
  }
  json::object body;
  if (file) body["config"] = std::filesystem::absolute(*file).lexically_normal().string();
  api_client client((*found)->url, (*found)->token);
  http::fields headers;
  headers.set(http::field::content_type, "application/json");
  auto reply = client.call(http::verb::post, "/api/v1/admin/reload", json::serialize(body),
                           std::move(headers));
  if (!reply) {
    std::cerr << "pantry: " << reply.error().message << '\n';
    return kFailed;
  }
  boost::system::error_code ec;
  auto v = json::parse(reply->body, ec);
  if ((reply->status != 200 && reply->status != 422) || ec || !v.is_object()) {
    std::cerr << "pantry: " << api_client::failure("reload", *reply).message << '\n';
    return kFailed;
  }
  const json::object& r = v.get_object();
  const std::string outcome = text_of(r, "outcome");
  const std::string source = text_of(r, "source");
  if (outcome == "refused") {
    std::cerr << "pantry: reload refused; the running config stays:\n"
              << text_of(r, "error") << '\n';
    return kFailed;
  }
  std::cout << "reloaded " << source << '\n';
  std::size_t changed = 0;
  if (auto* keys = r.if_contains("changed"); keys && keys->is_array()) {
    for (const auto& k : keys->get_array()) {
      if (!k.is_string()) continue;
      std::cout << "  changed: " << std::string_view(k.get_string()) << '\n';
      ++changed;
    }
  }
  if (changed == 0) std::cout << "  no live setting changed\n";
  if (auto* keys = r.if_contains("needs_restart"); keys && keys->is_array()) {
    for (const auto& k : keys->get_array()) {
      if (!k.is_object()) continue;
      const auto& o = k.get_object();
      std::cout << "  needs a restart: " << text_of(o, "key");
      if (auto running = text_of(o, "running"); !running.empty()) {
        std::cout << " (running " << running << ", the file says " << text_of(o, "wanted") << ")";
      }
      std::cout << "; it keeps its value until pantry restarts\n";
    }
  }
  return kOk;
}

}  // namespace pantry::cli
