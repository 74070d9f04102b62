#include "build.h"

#include "pantry/cache/digest.h"
#include "pantry/config/config.h"
#include "pantry/orchestrator/runner/image_reference.h"
#include "pantry/orchestrator/runner/images.h"
#include "pantry/orchestrator/runner/service.h"
#include "pantry/proxy/client.h"
#include "session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace pantry::cli {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
namespace builder = orchestrator::builder;
namespace runner = orchestrator::runner;

constexpr std::size_t kMaxAnswer = std::size_t{1} << 20;
constexpr std::size_t kMaxLayer = std::size_t{8} << 30;

struct reply {
  unsigned status = 0;
  http::fields headers;
  std::string body;
};

json::object to_json(const builder::layer_ref& l) {
  return json::object{{"digest", l.digest.str()},
                      {"diff_id", l.diff_id.str()},
                      {"size", l.size},
                      {"media_type", l.media_type}};
}

result<builder::layer_ref> layer_of(const json::value& v) {
  const auto* o = v.if_object();
  if (!o) return error(errc::invalid_argument, "pantry sent a layer that is not an object");
  builder::layer_ref l;
  auto digest = o->if_contains("digest");
  auto diff_id = o->if_contains("diff_id");
  auto size = o->if_contains("size");
  auto media = o->if_contains("media_type");
  if (!digest || !digest->is_string() || !diff_id || !diff_id->is_string() || !size ||
      !size->is_number() || !media || !media->is_string()) {
    return error(errc::invalid_argument,
                 "pantry sent a layer without its digests: " + json::serialize(v));
  }
  auto d = cache::digest::parse(std::string_view(digest->get_string()));
  auto i = cache::digest::parse(std::string_view(diff_id->get_string()));
  if (!d || !i) return error(errc::invalid_argument, "pantry sent a malformed layer digest");
  l.digest = *d;
  l.diff_id = *i;
  l.size = size->to_number<std::uint64_t>();
  l.media_type = std::string(media->get_string());
  return l;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The build's backend over HTTP: blocking calls, each run to its end on a private io_context.
class http_backend final : public builder::build_backend {
 public:
  // `fresh`: --no-cache; RUN steps run even when their key has a layer (which they replace).
  http_backend(app::control_endpoint ep, bool fresh)
      : ep_(std::move(ep)), fresh_(fresh), strand_(ioc_.get_executor()) {
    proxy::client_options co;
    co.use_env_proxy = false;
    co.user_agent = "pantry-build/" PANTRY_VERSION;
    co.idle_timeout = std::chrono::minutes(2);  // keep-alive events come every 2 s
    client_ = proxy::client::create(strand_, co);
    puller_ =
        runner::image_puller::create(client_, ep_.url, "Bearer " + ep_.token, nullptr, strand_);
  }
  ~http_backend() override {
    puller_.reset();
    client_.reset();
    ioc_.run();  // let go of pooled connections on their own context
  }

  result<builder::base_image> resolve_base(const builder::image_reference& ref,
                                           bool allow_unpinned) override {
    auto r = sync(puller_->resolve(ref, allow_unpinned));
    if (!r) return r.error();
    builder::base_image b;
    b.pinned_reference = r->repository + "@" + r->manifest_digest.str();
    b.manifest_digest = r->manifest_digest;
    b.config_json = r->config_json;
    for (const auto& l : r->layers) {
      b.layers.push_back({l.digest, l.diff_id, l.size, l.media_type});
      base_of_.emplace(l.digest.str(), b.pinned_reference);
    }
    bases_[b.pinned_reference] = b.layers;
    return b;
  }

  result<std::optional<builder::layer_ref>> lookup(const cache::digest& key) override {
    auto r = call(http::verb::get, "/api/v1/build/cache/" + hex(key), {}, {});
    if (!r) return r.error();
    if (r->status == 404) return std::optional<builder::layer_ref>();
    if (r->status != 200) return failed("build cache lookup", *r);
    boost::system::error_code ec;
    auto v = json::parse(r->body, ec);
    if (ec) return error(errc::invalid_argument, "pantry's build cache answered no JSON");
    auto l = layer_of(v);
    if (!l) return l.error();
    return std::optional<builder::layer_ref>(std::move(*l));
  }

  result<builder::layer_ref> store_layer(const cache::digest& key, const fs::path& file,
                                         const builder::layer_info& info) override {
    http::fields h;
    h.set("X-Pantry-Layer-Digest", info.digest.str());
    h.set("X-Pantry-Layer-Diff-Id", info.diff_id.str());
    h.set(http::field::content_type, info.media_type);
    auto r = call(http::verb::post, "/api/v1/build/cache/" + hex(key), read_file(file), h);
    if (!r) return r.error();
    if (r->status != 201) return failed("storing a layer", *r);
    boost::system::error_code ec;
    auto v = json::parse(r->body, ec);
    if (ec) return error(errc::invalid_argument, "pantry's build cache answered no JSON");
    return layer_of(v);
  }

  result<builder::layer_ref> run(const builder::run_request& request,
                                 const std::function<void(std::string_view)>& output) override {
    auto split = split_base(request.layers);
    json::object step{{"image", split.base.empty() ? "scratch" : split.base},
                      {"argv", strings(request.command.argv)},
                      {"env", strings(request.command.env)},
                      {"network", std::string(runner::to_string(request.network))}};
    if (!request.command.user.empty()) step["user"] = request.command.user;
    if (!request.command.working_dir.empty()) step["working_dir"] = request.command.working_dir;
    json::array layers;
    for (const auto& l : split.built)
      layers.push_back(to_json(l));
    json::object body{
        {"key", hex(request.key)},
        {"base", split.base},
        {"layers", std::move(layers)},
        {"step", std::move(step)},
        {"source_date_epoch", request.source_date_epoch},
        {"fresh", fresh_},
        {"compression", request.compression == builder::layer_compression::zstd ? "zstd" : "gzip"}};
    auto done = sync(stream("/api/v1/build/run", json::serialize(body), output));
    if (!done) return done.error();
    const json::object& r = *done;
    if (auto l = r.if_contains("layer")) return layer_of(*l);
    return error(errc::invalid_argument, describe_failure(request.command.argv, r));
  }

  result<void> materialize(const std::vector<builder::layer_ref>& layers, const fs::path& dir,
                           const std::vector<std::string>& paths) override {
    auto split = split_base(layers);
    json::array built;
    for (const auto& l : split.built)
      built.push_back(to_json(l));
    json::array want;
    for (const auto& p : paths)
      want.emplace_back(p);
    json::object body{{"base", split.base},
                      {"layers", std::move(built)},
                      {"dir", fs::absolute(dir).string()},
                      {"paths", std::move(want)}};
    auto r = call(http::verb::post, "/api/v1/build/materialize", json::serialize(body), {});
    if (!r) return r.error();
    if (r->status != 200) return failed("reading a stage's files", *r);
    return {};
  }

  result<cache::digest> push_image(const std::string& tag, const std::string& config_json,
                                   const std::string& manifest_json,
                                   const std::vector<builder::layer_ref>& layers) override {
    auto ref = runner::parse_image_reference(tag);
    if (!ref) return error(errc::invalid_argument, "-t " + tag + ": " + ref.error().message);
    if (!ref->digest.empty()) {
      return error(
          errc::invalid_argument,
          "-t " + tag + ": name the image by NAME:TAG; its digest is what the build makes");
    }
    const std::string& repo = ref->name;
    const std::string name_tag = ref->tag.empty() ? "latest" : ref->tag;
    for (const auto& l : layers) {
      if (auto r = push_blob(repo, l.digest, {}); !r) return r.error();
    }
    auto config_digest = cache::digest::of(std::as_bytes(std::span(config_json)));
    if (auto r = push_blob(repo, config_digest, config_json); !r) return r.error();
    http::fields h;
    h.set(http::field::content_type, builder::kImageManifestMediaType);
    auto r = call(http::verb::put, "/v2/" + repo + "/manifests/" + name_tag, manifest_json, h);
    if (!r) return r.error();
    if (r->status != 201) return failed("pushing the manifest of " + tag, *r);
    // The registry's word for what it stored (the builder checks it against the manifest).
    auto stored = r->headers.find("Docker-Content-Digest");
    if (stored == r->headers.end()) {
      return error(errc::invalid_argument,
                   "pushing the manifest of " + tag + ": pantry's answer names no digest");
    }
    auto digest = cache::digest::parse(std::string_view(stored->value()));
    if (!digest) {
      return error(errc::invalid_argument, "pushing the manifest of " + tag +
                                               ": pantry answered the digest \"" +
                                               std::string(stored->value()) + "\"");
    }
    return *digest;
  }

 private:
  struct base_split {
    std::string base;                       // NAME@sha256:… or ""
    std::vector<builder::layer_ref> built;  // the layers after the base's
  };

  // The layers of a stage are a base image's (all of them, first) and then built ones.
  base_split split_base(const std::vector<builder::layer_ref>& layers) const {
    base_split out;
    if (!layers.empty()) {
      auto it = base_of_.find(layers.front().digest.str());
      if (it != base_of_.end()) {
        const auto& base_layers = bases_.at(it->second);
        if (layers.size() >= base_layers.size() &&
            std::equal(base_layers.begin(), base_layers.end(), layers.begin())) {
          out.base = it->second;
          out.built.assign(layers.begin() + static_cast<std::ptrdiff_t>(base_layers.size()),
                           layers.end());
          return out;
        }
      }
    }
    out.built = layers;
    return out;
  }

  // Makes blob `d` part of `repo`: already there, mounted from the base image it came from, or
  // uploaded (`bytes`, else the build cache's copy).
  result<void> push_blob(const std::string& repo, const cache::digest& d, std::string bytes) {
    auto head = call(http::verb::head, "/v2/" + repo + "/blobs/" + d.str(), {}, {});
    if (!head) return head.error();
    if (head->status == 200) return {};
    if (auto base = base_of_.find(d.str()); base != base_of_.end()) {
      const std::string from = base->second.substr(0, base->second.find('@'));
      auto m = call(http::verb::post,
                    "/v2/" + repo + "/blobs/uploads/?mount=" + d.str() + "&from=" + from, {}, {});
      if (!m) return m.error();
      if (m->status == 201) return {};
      return failed("mounting " + d.str() + " from " + from, *m);
    }
    if (bytes.empty()) {
      auto got = call(http::verb::get, "/api/v1/build/layers/" + d.str(), {}, {}, kMaxLayer);
      if (!got) return got.error();
      if (got->status != 200) return failed("reading layer " + d.str(), *got);
      bytes = std::move(got->body);
    }
    http::fields h;
    h.set(http::field::content_type, "application/octet-stream");
    auto up = call(http::verb::post, "/v2/" + repo + "/blobs/uploads/?digest=" + d.str(),
                   std::move(bytes), h);
    if (!up) return up.error();
    if (up->status != 201) return failed("uploading " + d.str() + " to " + repo, *up);
    return {};
  }

  static std::string hex(const cache::digest& d) {
    std::string s = d.str();
    return s.substr(s.find(':') + 1);
  }

  static json::array strings(const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v)
      a.emplace_back(s);
    return a;
  }

  static std::string describe_failure(const std::vector<std::string>& argv, const json::object& r) {
    std::string cmd;
    for (const auto& a : argv)
      cmd += (cmd.empty() ? "" : " ") + a;
    if (cmd.size() > 200) cmd = cmd.substr(0, 200) + "…";
    auto flag = [&](std::string_view k) {
      auto v = r.if_contains(k);
      return v && v->is_bool() && v->get_bool();
    };
    if (auto e = r.if_contains("runc_error"); e && e->is_string()) {
      return "`" + cmd + "` could not start: " + std::string(e->get_string());
    }
    if (flag("oom_killed")) return "`" + cmd + "` was OOM-killed";
    if (flag("timed_out")) return "`" + cmd + "` timed out";
    if (flag("cancelled")) return "`" + cmd + "` was cancelled";
    auto code = r.if_contains("exit_code");
    return "`" + cmd + "` exited with code " +
           (code && code->is_int64() ? std::to_string(code->get_int64()) : std::string("?"));
  }

  static error failed(const std::string& what, const reply& r) {
    std::string body = r.body.substr(0, 500);
    while (!body.empty() && body.back() == '\n')
      body.pop_back();
    return error(
        r.status == 404 ? errc::not_found : errc::io_error,
        what + ": pantry answered " + std::to_string(r.status) + (body.empty() ? "" : ": " + body));
  }

  template <class T>
  T sync(asio::awaitable<T> a) {
    std::optional<T> out;
    asio::co_spawn(strand_, std::move(a), [&out](std::exception_ptr e, T v) {
      if (e) {
        out.emplace(error(errc::io_error, "bug: an exception escaped the build's client"));
      } else {
        out.emplace(std::move(v));
      }
    });
    ioc_.restart();
    ioc_.run();
    return std::move(*out);
  }

  asio::awaitable<result<reply>> call_async(http::verb method, std::string path, std::string body,
                                            http::fields headers, std::size_t limit) {
    proxy::request req;
    req.method = method;
    req.url = ep_.url + path;
    req.headers = std::move(headers);
    // The control token is pantry's own credential: the build routes and hosted pushes take it.
    req.headers.set(http::field::authorization, "Bearer " + ep_.token);
    req.body = std::move(body);
    req.follow_redirects = false;
    auto sent = co_await client_->send(std::move(req));
    if (!sent) co_return sent.error();
    reply out;
    out.status = sent->status();
    out.headers = sent->headers();
    if (method != http::verb::head) {
      auto text = co_await sent->read_all(limit);
      if (!text) co_return text.error();
      out.body = std::move(*text);
    }
    co_return out;
  }

  result<reply> call(http::verb method, const std::string& path, std::string body,
                     http::fields headers, std::size_t limit = kMaxAnswer) {
    return sync(call_async(method, path, std::move(body), std::move(headers), limit));
  }

  // POSTs a step and reads its event stream; output lines go to `output`.
  asio::awaitable<result<json::object>> stream(
      std::string path, std::string body, const std::function<void(std::string_view)>& output) {
    proxy::request req;
    req.method = http::verb::post;
    req.url = ep_.url + path;
    req.headers.set(http::field::authorization, "Bearer " + ep_.token);
    req.headers.set(http::field::content_type, "application/json");
    req.body = std::move(body);
    auto sent = co_await client_->send(std::move(req));
    if (!sent) co_return sent.error();
    proxy::response res = std::move(*sent);
    if (res.status() != 200) {
      auto text = co_await res.read_all(kMaxAnswer);
      reply r{res.status(), {}, text ? *text : std::string()};
      co_return failed("running the step", r);
    }
    std::string pending;
    std::vector<std::byte> buf(64 * 1024);
    for (;;) {
      auto n = co_await res.read_some(buf);
      if (!n) co_return n.error();
      if (*n == 0) break;
      pending.append(reinterpret_cast<const char*>(buf.data()), *n);
      std::size_t start = 0;
      for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
        std::string_view line = std::string_view(pending).substr(start, nl - start);
        start = nl + 1;
        boost::system::error_code ec;
        auto v = json::parse(line, ec);
        if (ec || !v.is_object()) continue;
        auto& o = v.get_object();
        auto type = o.if_contains("type");
        std::string_view t = type && type->is_string() ? std::string_view(type->get_string()) : "";
        if (t == "line" || t == "report") {
          auto text = o.if_contains("text");
          if (text && text->is_string() && output) output(text->get_string());
        } else if (t == "result") {
          co_return std::move(o);
        } else if (t == "error") {
          auto m = o.if_contains("message");
          co_return error(errc::io_error, m && m->is_string() ? std::string(m->get_string())
                                                              : std::string("the step failed"));
        }
      }
      pending.erase(0, start);
    }
    co_return error(errc::io_error, "the step's stream ended without a result");
  }

  app::control_endpoint ep_;
  bool fresh_ = false;
  asio::io_context ioc_;
  asio::strand<asio::io_context::executor_type> strand_;
  std::shared_ptr<proxy::client> client_;
  std::shared_ptr<runner::image_puller> puller_;
  std::map<std::string, std::string> base_of_;  // layer digest → NAME@sha256:… of its image
  std::map<std::string, std::vector<builder::layer_ref>> bases_;  // image → its layers
};

std::string seconds(std::chrono::nanoseconds t) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f s", std::chrono::duration<double>(t).count());
  return b;
}

}  // namespace

int run_build(const build_options& opt) {
  config::config cfg = config::defaults();
  if (opt.config_file) {
    auto loaded = config::load_file(*opt.config_file);
    if (!loaded) {
      std::cerr << "pantry: " << loaded.error().message << '\n';
      return 1;
    }
    cfg = std::move(*loaded);
  }
  if (opt.data_dir) cfg.data_dir = *opt.data_dir;
  if (!opt.verbose) spdlog::set_level(spdlog::level::warn);
  auto s = session::open(cfg);
  if (!s) {
    std::cerr << "pantry: " << s.error().message << '\n';
    return 1;
  }
  builder::build_request request = opt.request;
  // Staging and layer files beside the data dir's disk, not in a small /tmp.
  request.scratch_dir = fs::path(cfg.data_dir) / "build-scratch";
  std::error_code ec;
  fs::create_directories(request.scratch_dir, ec);
  const auto start = std::chrono::steady_clock::now();
  result<builder::build_result> built = error(errc::io_error, "not built");
  {
    http_backend backend((*s)->endpoint(), request.no_cache);
    builder::build_events events;
    events.step_done = [](const builder::step_report& r) {
      std::printf("[%zu/%zu] %-6s %8s  %s\n", r.stage + 1, r.index + 1,
                  std::string(builder::to_string(r.outcome)).c_str(), seconds(r.time).c_str(),
                  r.text.c_str());
      std::fflush(stdout);
    };
    events.output = [](std::string_view line) {
      std::fprintf(stderr, "  | %.*s\n", static_cast<int>(line.size()), line.data());
    };
    built = builder::build(request, backend, events);
  }
  if (!built) {
    std::cerr << "pantry: " << built.error().message << '\n';
    return 1;
  }
  for (const auto& name : built->unused_build_args) {
    std::cerr << "pantry: warning: --build-arg " << name << " is not used by any ARG\n";
  }
  for (const auto& tag : request.tags)
    std::printf("%s@%s\n", tag.c_str(), built->manifest_digest.str().c_str());
  std::fprintf(stderr, "pantry: built in %s\n",
               seconds(std::chrono::steady_clock::now() - start).c_str());
  return 0;
}

}  // namespace pantry::cli
