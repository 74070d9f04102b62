#include "pantry/orchestrator/builder/service.h"

#include "pantry/cache/store.h"
#include "pantry/orchestrator/builder/layer_writer.h"
#include "pantry/orchestrator/runner/step_stream.h"
#include "pantry/proxy/off_thread.h"
#include "pantry/proxy/server.h"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using runner::authorized;
using runner::read_body;
using runner::respond_json;
using runner::respond_text;

constexpr std::string_view kPrefix = "/api/v1/build/";
constexpr std::string_view kStepKeyPrefix = "build/step/";
constexpr std::size_t kMaxRunRequest = std::size_t{1} << 20;
constexpr std::size_t kIoBuffer = 256 * 1024;

error invalid(std::string message) {
  return error(errc::invalid_argument, std::move(message));
}

bool is_key_hex(std::string_view s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// A layer blob of the cache: what a step key's entry points at.
struct layer_blob {
  cache::digest digest;
  cache::digest diff_id;
  std::uint64_t size = 0;
  std::string media_type;
};

json::object to_json(const layer_blob& l) {
  return json::object{{"digest", l.digest.str()},
                      {"diff_id", l.diff_id.str()},
                      {"size", l.size},
                      {"media_type", l.media_type}};
}

result<cache::digest> digest_member(const json::object& o, std::string_view key) {
  auto v = o.if_contains(key);
  if (!v || !v->is_string()) return invalid(std::string(key) + ": expected a sha256 digest");
  auto d = cache::digest::parse(std::string_view(v->get_string()));
  if (!d) return invalid(std::string(key) + ": " + d.error().message);
  return *d;
}

result<runner::cached_layer> cached_layer_of(const json::value& v) {
  if (!v.is_object()) return invalid("layers: expected objects");
  const auto& o = v.get_object();
  auto digest = digest_member(o, "digest");
  if (!digest) return digest.error();
  auto diff_id = digest_member(o, "diff_id");
  if (!diff_id) return diff_id.error();
  auto mt = o.if_contains("media_type");
  if (!mt || !mt->is_string()) return invalid("layers: media_type: expected a string");
  return runner::cached_layer{*digest, *diff_id, std::string(mt->get_string())};
}

result<std::vector<runner::cached_layer>> layers_of(const json::object& o) {
  std::vector<runner::cached_layer> out;
  auto v = o.if_contains("layers");
  if (!v || v->is_null()) return out;
  if (!v->is_array()) return invalid("layers: expected an array");
  for (const auto& l : v->get_array()) {
    auto c = cached_layer_of(l);
    if (!c) return c.error();
    out.push_back(std::move(*c));
  }
  return out;
}

std::string string_of(const json::object& o, std::string_view key) {
  auto v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// The record of blob `id`, waiting while another writer of the same blob (a concurrent build
// that made the same layer) has it begun but not committed. Blocks.
result<cache::object_info> wait_for_blob(cache::store& store, const cache::digest& id) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    auto info = store.stat_blob(id);
    if (info || std::chrono::steady_clock::now() > give_up) return info;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Copies a file into the cache as blob `id` (unpinned: build layers are evictable cache).
result<void> store_file(cache::store& store, const fs::path& file, const cache::digest& id,
                        const std::string& media_type, std::uint64_t size) {
  if (store.stat_blob(id)) return {};
  auto w = store.begin_blob(id, media_type, size);
  if (!w) {
    if (!w.error().is(errc::already_exists)) return w.error();
    auto other = wait_for_blob(store, id);  // another build is writing the same layer
    if (!other) return other.error();
    return {};
  }
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error(errc::io_error, "cannot read " + file.string());
  std::vector<std::byte> buf(kIoBuffer);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return error(errc::io_error, "cannot read " + file.string());
    }
    if (n == 0) break;
    if (auto r = w->write(std::span(buf).first(static_cast<std::size_t>(n))); !r) {
      ::close(fd);
      return r.error();
    }
  }
  ::close(fd);
  auto committed = w->commit();
  if (!committed) return committed.error();
  return {};
}

class build_impl final : public build_service, public std::enable_shared_from_this<build_impl> {
 public:
  build_impl(std::shared_ptr<runner::runner_service> runner, std::shared_ptr<cache::store> store,
             asio::any_io_executor blocking)
      : runner_(std::move(runner)), store_(std::move(store)), blocking_(std::move(blocking)) {}

  void install(proxy::server& srv) override {
    std::weak_ptr<build_impl> weak = weak_from_this();
    srv.route(std::string(kPrefix), [weak](proxy::exchange& ex) -> asio::awaitable<void> {
      auto self = weak.lock();
      if (!self) {
        co_await respond_text(ex, http::status::service_unavailable, "the builder has stopped");
        co_return;
      }
      co_await self->handle(ex);
    });
  }

 private:
  asio::awaitable<void> handle(proxy::exchange& ex);
  asio::awaitable<void> cache_get(proxy::exchange& ex, const std::string& key);
  asio::awaitable<void> cache_put(proxy::exchange& ex, const std::string& key);
  asio::awaitable<void> run(proxy::exchange& ex);
  asio::awaitable<void> materialize(proxy::exchange& ex);
  asio::awaitable<void> layer_get(proxy::exchange& ex, std::string_view digest);

  // The layer recorded under `key` (64 hex) whose blob the cache still has.
  result<std::optional<layer_blob>> lookup(const std::string& key);
  result<void> record(const std::string& key, const layer_blob& layer);
  // The blocking tail of a RUN step: the upper directory as a layer, stored and recorded.
  result<layer_blob> keep_layer(const std::string& key, const fs::path& upper,
                                const layer_options& options);

  template <class F>
  asio::awaitable<std::invoke_result_t<F>> off_thread(F f) {
    return proxy::off_thread(blocking_, std::move(f));
  }

  // Single flight of RUN steps by key: waiters park a timer that the build's end cancels.
  struct flight {
    std::vector<std::shared_ptr<asio::steady_timer>> waiters;
  };
  // Waits while a RUN of `key` is in flight; returns true when this caller now owns the key.
  asio::awaitable<bool> claim(const std::string& key);
  void release(const std::string& key);

  std::shared_ptr<runner::runner_service> runner_;
  std::shared_ptr<cache::store> store_;
  asio::any_io_executor blocking_;
  std::mutex flights_mutex_;
  std::map<std::string, flight> flights_;  // guarded by flights_mutex_
};

result<std::optional<layer_blob>> build_impl::lookup(const std::string& key) {
  auto e = store_->get_entry(std::string(kStepKeyPrefix) + key);
  if (!e) {
    if (e.error().is(errc::not_found)) return std::optional<layer_blob>();
    return e.error();
  }
  if (!e->target) return std::optional<layer_blob>();
  auto info = store_->stat_blob(*e->target);
  if (!info) return std::optional<layer_blob>();  // evicted: a miss
  auto diff_id = cache::digest::parse(e->attribute("diff_id"));
  if (!diff_id) return std::optional<layer_blob>();
  return std::optional<layer_blob>(layer_blob{*e->target, *diff_id, info->size, e->content_type});
}

result<void> build_impl::record(const std::string& key, const layer_blob& layer) {
  cache::entry e;
  e.target = layer.digest;
  e.content_type = layer.media_type;
  e.fetched_at = cache::clock::now();
  e.expires_at = cache::clock::time_point::max();
  e.attributes = {{"diff_id", layer.diff_id.str()}, {"size", std::to_string(layer.size)}};
  return store_->put_entry(std::string(kStepKeyPrefix) + key, e);
}

asio::awaitable<void> build_impl::handle(proxy::exchange& ex) {
  ex.set_route("build");
  if (!co_await authorized(ex, runner_->token())) co_return;
  const auto& req = ex.request();
  std::string_view path = std::string_view(req.target()).substr(kPrefix.size());
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  const auto method = req.method();
  if (path.starts_with("cache/") && is_key_hex(path.substr(6))) {
    std::string key(path.substr(6));
    if (method == http::verb::get || method == http::verb::head) {
      co_await cache_get(ex, key);
    } else if (method == http::verb::post) {
      co_await cache_put(ex, key);
    } else {
      co_await respond_text(ex, http::status::method_not_allowed, "GET or POST a build cache key");
    }
    co_return;
  }
  if (path == "run" && method == http::verb::post) {
    co_await run(ex);
    co_return;
  }
  if (path == "materialize" && method == http::verb::post) {
    co_await materialize(ex);
    co_return;
  }
  if (path.starts_with("layers/") && (method == http::verb::get || method == http::verb::head)) {
    co_await layer_get(ex, path.substr(7));
    co_return;
  }
  co_await respond_text(
      ex, http::status::not_found,
      "no such build route: " + std::string(req.method_string()) + " " + std::string(req.target()));
}

asio::awaitable<void> build_impl::cache_get(proxy::exchange& ex, const std::string& key) {
  auto found = co_await off_thread([&] { return lookup(key); });
  if (!found) {
    co_await respond_text(ex, http::status::internal_server_error, found.error().message);
  } else if (!*found) {
    co_await respond_text(ex, http::status::not_found, "no layer under build cache key " + key);
  } else {
    co_await respond_json(ex, http::status::ok, to_json(**found));
  }
}

asio::awaitable<void> build_impl::cache_put(proxy::exchange& ex, const std::string& key) {
  const auto& req = ex.request();
  auto digest = cache::digest::parse(std::string_view(req["X-Pantry-Layer-Digest"]));
  auto diff_id = cache::digest::parse(std::string_view(req["X-Pantry-Layer-Diff-Id"]));
  std::string media_type(req[http::field::content_type]);
  if (!digest || !diff_id || media_type.empty()) {
    co_await respond_text(ex, http::status::bad_request,
                          "a layer needs X-Pantry-Layer-Digest, X-Pantry-Layer-Diff-Id and "
                          "Content-Type (its media type)");
    co_return;
  }
  layer_blob layer{*digest, *diff_id, 0, media_type};
  // Already stored (another build's identical layer): the body is not needed.
  auto have = store_->stat_blob(layer.digest);
  std::optional<cache::blob_writer> writer;
  if (!have) {
    auto w = co_await off_thread([&] { return store_->begin_blob(layer.digest, media_type, {}); });
    if (!w && !w.error().is(errc::already_exists)) {
      co_await respond_text(ex, http::status::internal_server_error, w.error().message);
      co_return;
    }
    if (w) writer.emplace(std::move(*w));
  }
  std::vector<std::byte> buf(kIoBuffer);
  for (;;) {
    auto n = co_await ex.read_body(buf);
    if (!n) co_return;
    if (*n == 0) break;
    if (writer) {
      auto wrote = co_await off_thread([&] { return writer->write(std::span(buf).first(*n)); });
      if (!wrote) {
        co_await respond_text(ex, http::status::internal_server_error, wrote.error().message);
        co_return;
      }
    }
  }
  if (writer) {
    auto committed = co_await off_thread([&] { return writer->commit(); });
    if (!committed) {
      // A digest mismatch names both digests: the layer sent is not the one described.
      const auto status = committed.error().is(errc::digest_mismatch)
                              ? http::status::bad_request
                              : http::status::internal_server_error;
      co_await respond_text(ex, status, committed.error().message);
      co_return;
    }
  }
  auto info = co_await off_thread([&] { return wait_for_blob(*store_, layer.digest); });
  if (!info) {
    co_await respond_text(ex, http::status::internal_server_error, info.error().message);
    co_return;
  }
  layer.size = info->size;
  auto recorded = co_await off_thread([&] { return record(key, layer); });
  if (!recorded) {
    co_await respond_text(ex, http::status::internal_server_error, recorded.error().message);
    co_return;
  }
  co_await respond_json(ex, http::status::created, to_json(layer));
}

asio::awaitable<bool> build_impl::claim(const std::string& key) {
  std::shared_ptr<asio::steady_timer> timer;
  {
    std::lock_guard lock(flights_mutex_);
    auto [it, inserted] = flights_.try_emplace(key);
    if (inserted) co_return true;
    timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor,
                                                 asio::steady_timer::time_point::max());
    it->second.waiters.push_back(timer);
  }
  boost::system::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  co_await timer->async_wait(token);
  co_return false;
}

void build_impl::release(const std::string& key) {
  std::vector<std::shared_ptr<asio::steady_timer>> waiters;
  {
    std::lock_guard lock(flights_mutex_);
    auto it = flights_.find(key);
    if (it == flights_.end()) return;
    waiters = std::move(it->second.waiters);
    flights_.erase(it);
  }
  for (auto& t : waiters)
    asio::post(t->get_executor(), [t] { t->cancel(); });
}

result<layer_blob> build_impl::keep_layer(const std::string& key, const fs::path& upper,
                                          const layer_options& options) {
  const fs::path file = upper.string() + ".layer";
  auto written = write_layer_file(upper, file, options);
  std::error_code ec;
  fs::remove_all(upper, ec);
  if (!written) return written.error();
  layer_blob layer{written->digest, written->diff_id, written->size, written->media_type};
  auto stored = store_file(*store_, file, layer.digest, layer.media_type, layer.size);
  fs::remove(file, ec);
  if (!stored) return stored.error();
  if (auto r = record(key, layer); !r) return r.error();
  return layer;
}

asio::awaitable<void> build_impl::run(proxy::exchange& ex) {
  auto body = co_await read_body(ex, kMaxRunRequest);
  if (!body) co_return;
  boost::system::error_code ec;
  auto v = json::parse(*body, ec);
  if (ec || !v.is_object()) {
    co_await respond_text(ex, http::status::bad_request, "a RUN request is a JSON object");
    co_return;
  }
  const auto& o = v.get_object();
  std::string key = string_of(o, "key");
  auto layers = layers_of(o);
  auto step = o.if_contains("step") && o.at("step").is_object()
                  ? runner::parse_step_request(json::serialize(o.at("step")))
                  : result<runner::step_request>(invalid("step: expected an object"));
  auto epoch = o.if_contains("source_date_epoch");
  // --no-cache: run even when the key has a layer, and record the new one.
  auto fresh_member = o.if_contains("fresh");
  const bool fresh = fresh_member && fresh_member->is_bool() && fresh_member->get_bool();
  std::string compression = string_of(o, "compression");
  std::string problem;
  if (!is_key_hex(key)) problem = "key: expected 64 lowercase hex digits";
  if (!layers) problem = layers.error().message;
  if (!step) problem = step.error().message;
  if (!epoch || !epoch->is_int64()) problem = "source_date_epoch: expected a number";
  if (compression != "gzip" && compression != "zstd") problem = "compression: gzip or zstd";
  if (!problem.empty()) {
    co_await respond_text(ex, http::status::bad_request, "RUN request: " + problem);
    co_return;
  }
  runner::layers_step_request request;
  request.base_image = string_of(o, "base");
  request.layers = std::move(*layers);
  request.step = std::move(*step);
  request.architecture = string_of(o, "architecture");
  if (request.architecture.empty()) request.architecture = "amd64";
  layer_options options;
  options.source_date_epoch = epoch->get_int64();
  options.compression = compression == "zstd" ? layer_compression::zstd : layer_compression::gzip;

  runner::streamed_step streamed =
      [self = shared_from_this(), key, request = std::move(request), options, fresh](
          runner::step_event_sink sink, std::shared_ptr<runner::step_cancel> cancel) mutable
      -> asio::awaitable<result<json::object>> {
    // One key runs once at a time; whoever waited finds the layer recorded.
    while (!co_await self->claim(key)) {
    }
    struct releaser {
      build_impl* self;
      std::string key;
      ~releaser() { self->release(key); }
    } guard{self.get(), key};
    result<std::optional<layer_blob>> found = std::optional<layer_blob>();
    if (!fresh) found = co_await self->off_thread([&] { return self->lookup(key); });
    if (!found) co_return found.error();
    if (*found) {
      json::object r;
      r["layer"] = to_json(**found);
      r["cached"] = true;
      co_return r;
    }
    const fs::path kept = self->runner_->keep_upper_dir();
    if (kept.empty()) co_return error(errc::io_error, "the runner is disabled");
    const fs::path upper = kept / ("upper-" + runner::random_hex16());
    request.keep_upper = upper;
    auto outcome = co_await self->runner_->run_on_layers(std::move(request), std::move(sink),
                                                         std::move(cancel));
    std::error_code ec;
    if (!outcome) {
      fs::remove_all(upper, ec);
      co_return outcome.error();
    }
    const auto& r = outcome->result;
    json::object out = runner::to_json(*outcome);
    if (r.exit_code != 0 || r.oom_killed || r.timed_out || r.cancelled || !r.runc_error.empty()) {
      fs::remove_all(upper, ec);
      co_return out;  // the client words the failure from the result
    }
    auto layer = co_await self->off_thread([&] { return self->keep_layer(key, upper, options); });
    if (!layer) co_return layer.error();
    out["layer"] = to_json(*layer);
    co_return out;
  };
  co_await runner::stream_step(ex, std::move(streamed));
}

asio::awaitable<void> build_impl::materialize(proxy::exchange& ex) {
  auto body = co_await read_body(ex, kMaxRunRequest);
  if (!body) co_return;
  boost::system::error_code ec;
  auto v = json::parse(*body, ec);
  if (ec || !v.is_object()) {
    co_await respond_text(ex, http::status::bad_request, "a materialize request is a JSON object");
    co_return;
  }
  const auto& o = v.get_object();
  auto layers = layers_of(o);
  fs::path dir = string_of(o, "dir");
  std::vector<std::string> paths;
  if (auto p = o.if_contains("paths"); p && p->is_array()) {
    for (const auto& s : p->get_array()) {
      if (s.is_string()) paths.emplace_back(s.get_string());
    }
  }
  std::error_code fec;
  if (!layers || !dir.is_absolute() || !fs::is_directory(dir, fec)) {
    // Named, not a conditional's temporary inside co_await (CONTRIBUTING.md).
    std::string why = layers
                          ? std::string("dir: expected an absolute path of an existing directory")
                          : layers.error().message;
    co_await respond_text(ex, http::status::bad_request, std::move(why));
    co_return;
  }
  auto done = co_await runner_->materialize(string_of(o, "base"), std::move(*layers), dir,
                                            std::move(paths));
  if (!done) {
    const auto status = done.error().is(errc::not_found) ? http::status::not_found
                                                         : http::status::internal_server_error;
    co_await respond_text(ex, status, done.error().message);
    co_return;
  }
  json::object answer;
  answer["dir"] = dir.string();
  co_await respond_json(ex, http::status::ok, answer);
}

asio::awaitable<void> build_impl::layer_get(proxy::exchange& ex, std::string_view digest) {
  auto d = cache::digest::parse(digest);
  if (!d) {
    co_await respond_text(ex, http::status::bad_request, "not a digest: " + std::string(digest));
    co_return;
  }
  auto blob = store_->open_blob(*d);
  if (!blob) {
    co_await respond_text(ex, http::status::not_found, "no layer " + d->str() + " in the cache");
    co_return;
  }
  http::response_header<> header;
  header.result(http::status::ok);
  header.version(11);
  header.set(http::field::content_type, "application/octet-stream");
  const std::uint64_t size = blob->size();
  if (co_await ex.begin(std::move(header), size)) co_return;
  if (co_await ex.write_blob(*blob, 0, size)) co_return;
  co_await ex.end();
}

}  // namespace

std::shared_ptr<build_service> build_service::create(std::shared_ptr<runner::runner_service> runner,
                                                     std::shared_ptr<cache::store> store,
                                                     boost::asio::any_io_executor blocking) {
  return std::make_shared<build_impl>(std::move(runner), std::move(store), std::move(blocking));
}

}  // namespace pantry::orchestrator::builder
