#include "pantry/orchestrator/runner/images.h"

#include "pantry/proxy/client.h"
#include "pantry/registry/oci/protocol.h"
#include "pantry/text.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <exception>
#include <future>
#include <utility>

namespace pantry::orchestrator::runner {
namespace {

namespace http = boost::beast::http;
namespace oci = registry::oci;
using namespace asio::experimental::awaitable_operators;

// Manifests larger than this are refused, as pantry's registry and distribution refuse them.
constexpr std::size_t kMaxManifest = 4 << 20;
// Image configs are a few KiB; docker's history of a long Containerfile some hundred KiB.
constexpr std::uint64_t kMaxConfig = 16 << 20;
// How much of an error answer's body a message quotes.
constexpr std::size_t kErrorExcerpt = 300;
// Bytes a layer unpack asks of the network per hop between its thread and the I/O thread.
constexpr std::size_t kLayerChunk = 256 << 10;
// How long an unpack waits for one network step on the I/O thread before giving up. The client's
// own timeouts end every such step well before this; it only bounds the wait when the I/O threads
// have stopped (a server shutting down), which would otherwise hang the unpack's thread.
constexpr std::chrono::minutes kBridgeWait{5};

// The first bytes of an error body, printable on one line.
std::string excerpt(std::string_view body) {
  const std::string_view shown = trim_ascii_space(body.substr(0, kErrorExcerpt));
  std::string out;
  for (char c : shown) {
    const auto b = static_cast<unsigned char>(c);
    out += b < 0x20 || b == 0x7f ? ' ' : c;
  }
  if (body.size() > kErrorExcerpt) out += "…";
  return out;
}

error with_prefix(const error& e, const std::string& prefix) {
  return error(e.code, prefix + ": " + e.message);
}

// The pieces of a fetched manifest or config the puller uses.
struct document {
  std::string body;
  std::string content_type;
  std::string claimed_digest;  // Docker-Content-Digest; "" when absent
  cache::digest digest;        // sha256 of body
};

class puller_impl;

// The route labels pantry's registry gives these requests (counted into a traffic tally).
constexpr std::string_view kManifestRoute = "oci_manifest";
constexpr std::string_view kBlobRoute = "oci_blob";

// How pantry served a response, from its X-Pantry-Cache header (none when absent).
proxy::cache_outcome served_as(const proxy::response& res) {
  auto v = res.headers().find(proxy::kCacheHeader);
  if (v == res.headers().end()) return proxy::cache_outcome::none;
  return proxy::parse_cache_outcome(v->value()).value_or(proxy::cache_outcome::none);
}

// One layer blob streamed from /v2/ into the layer store. read() is the layer_source: it runs on
// the blocking thread and hands each network step to the I/O executor, waiting for it there, so
// that the response is only ever touched by one coroutine on its executor. The state is shared
// with those steps, so that a step the unpack stopped waiting for still has its buffer.
class layer_fetch : public std::enable_shared_from_this<layer_fetch> {
 public:
  layer_fetch(std::shared_ptr<const puller_impl> puller, asio::any_io_executor io, std::string url,
              resolved_layer layer, std::shared_ptr<proxy::traffic_tally> tally)
      : puller_(std::move(puller)),
        io_(std::move(io)),
        url_(std::move(url)),
        layer_(std::move(layer)),
        tally_(std::move(tally)),
        chunk_(kLayerChunk) {}

  // The layer_source. Its errors name the URL, not the layer: the store and the puller add those.
  // An error is returned again by every later call.
  result<std::size_t> read(std::span<std::byte> out);

  // Drops the response. Call on the I/O executor once the unpack is over.
  void close() noexcept { response_.reset(); }

 private:
  asio::awaitable<result<std::size_t>> open_step();
  asio::awaitable<result<std::size_t>> read_step(std::size_t max);
  // The next bytes of the blob, or the end and its digest check.
  result<std::size_t> next(std::span<std::byte> out);
  // Runs `step` on io_ and waits for it on this (blocking) thread.
  result<std::size_t> on_io(asio::awaitable<result<std::size_t>> step);

  std::shared_ptr<const puller_impl> puller_;
  asio::any_io_executor io_;
  std::string url_;
  resolved_layer layer_;
  std::shared_ptr<proxy::traffic_tally> tally_;  // counts the blob once it is whole; may be null
  proxy::cache_outcome outcome_ = proxy::cache_outcome::none;
  std::optional<proxy::response> response_;
  std::vector<std::byte> chunk_;
  cache::hasher hasher_;
  std::uint64_t bytes_ = 0;
  bool ended_ = false;
  std::optional<error> failed_;
};

class puller_impl : public image_puller, public std::enable_shared_from_this<puller_impl> {
 public:
  puller_impl(std::shared_ptr<proxy::client> client, std::string base_url,
              std::optional<std::string> authorization, std::shared_ptr<layer_store> layers,
              asio::any_io_executor blocking)
      : client_(std::move(client)),
        base_url_(std::move(base_url)),
        authorization_(std::move(authorization)),
        layers_(std::move(layers)),
        blocking_(std::move(blocking)),
        host_(host_platform()) {}

  asio::awaitable<result<resolved_image>> resolve(
      const image_reference& ref, bool allow_unpinned,
      std::shared_ptr<proxy::traffic_tally> tally) override;
  asio::awaitable<result<std::vector<layer_lease>>> unpack_layers(
      const resolved_image& img, std::shared_ptr<proxy::traffic_tally> tally) override;

  std::string url(std::string_view repository, std::string_view kind,
                  std::string_view reference) const {
    return base_url_ + "/v2/" + std::string(repository) + "/" + std::string(kind) + "/" +
           std::string(reference);
  }

  // GETs `url` and returns the response once it is a 200; any other status is an error that
  // gives the status and the first bytes of the body ("GET URL: 404 Not Found: {…}").
  asio::awaitable<result<proxy::response>> get(std::string url, std::string_view accept) const;

 private:
  // GETs a manifest or config of at most `limit` bytes, whole; counts it into `tally` (when not
  // null) as `route`.
  asio::awaitable<result<document>> get_document(std::string url, std::string_view accept,
                                                 std::size_t limit, proxy::traffic_tally* tally,
                                                 std::string_view route) const;
  // The lease on layer `index` of `img`, unpacked first unless the store has it.
  asio::awaitable<result<layer_lease>> lease_layer(
      const resolved_image& img, std::size_t index, asio::any_io_executor io,
      const std::shared_ptr<proxy::traffic_tally>& tally);
  // layer_store::unpack(), for co_spawn onto the blocking executor.
  asio::awaitable<result<layer_lease>> unpack_blocking(cache::digest diff_id,
                                                       std::string media_type, layer_source source);

  std::shared_ptr<proxy::client> client_;
  std::string base_url_;
  std::optional<std::string> authorization_;
  std::shared_ptr<layer_store> layers_;
  asio::any_io_executor blocking_;
  result<platform> host_;
};

asio::awaitable<result<proxy::response>> puller_impl::get(std::string url,
                                                          std::string_view accept) const {
  proxy::request req;
  req.method = http::verb::get;
  req.url = url;
  if (!accept.empty()) req.headers.set(http::field::accept, accept);
  if (authorization_) req.headers.set(http::field::authorization, *authorization_);
  auto res = co_await client_->send(std::move(req));
  if (!res) co_return res.error();
  if (res->status() == 200) co_return std::move(*res);
  std::array<std::byte, kErrorExcerpt + 1> buf{};
  std::size_t got = 0;
  while (got < buf.size()) {
    auto n = co_await res->read_some(std::span(buf).subspan(got));
    if (!n || *n == 0) break;
    got += *n;
  }
  const auto status = res->status();
  std::string message = "GET " + url + ": " + std::to_string(status) + " " +
                        std::string(http::obsolete_reason(http::int_to_status(status)));
  if (got > 0) {
    message += ": " + excerpt(std::string_view(reinterpret_cast<const char*>(buf.data()), got));
  }
  co_return error(status == 404 ? errc::not_found : errc::io_error, std::move(message));
}

asio::awaitable<result<document>> puller_impl::get_document(std::string url,
                                                            std::string_view accept,
                                                            std::size_t limit,
                                                            proxy::traffic_tally* tally,
                                                            std::string_view route) const {
  auto res = co_await get(url, accept);
  if (!res) co_return res.error();
  auto body = co_await res->read_all(limit);
  if (!body) {
    co_return error(body.error().code, "GET " + url + ": " + body.error().message);
  }
  if (tally) tally->add(route, served_as(*res), body->size());
  document d;
  d.content_type = std::string(res->headers()[http::field::content_type]);
  d.claimed_digest = std::string(res->headers()["Docker-Content-Digest"]);
  d.digest = cache::digest::of(*body);
  d.body = std::move(*body);
  co_return d;
}

asio::awaitable<result<resolved_image>> puller_impl::resolve(
    const image_reference& ref, bool allow_unpinned, std::shared_ptr<proxy::traffic_tally> tally) {
  const std::string label = "image " + ref.str();
  if (!host_) co_return with_prefix(host_.error(), label);
  resolved_image img;
  img.reference = ref;
  img.repository = ref.name;

  // The manifest asked for: by digest when there is one (a tag beside it is only a label).
  const std::string asked = ref.pinned() ? ref.digest : ref.tag.empty() ? "latest" : ref.tag;
  const std::string top_url = url(ref.name, "manifests", asked);
  auto top =
      co_await get_document(top_url, oci::kAllManifests, kMaxManifest, tally.get(), kManifestRoute);
  if (!top) co_return with_prefix(top.error(), label);
  if (ref.pinned()) {
    if (top->digest.str() != ref.digest) {
      co_return error(errc::digest_mismatch, label + ": GET " + top_url +
                                                 ": the manifest's sha256 is " + top->digest.str() +
                                                 ", not the digest asked for");
    }
  } else {
    if (!top->claimed_digest.empty() && top->claimed_digest != top->digest.str()) {
      co_return error(errc::digest_mismatch,
                      label + ": GET " + top_url + ": Docker-Content-Digest is " +
                          top->claimed_digest + " but the manifest's sha256 is " +
                          top->digest.str());
    }
    if (!allow_unpinned) {
      co_return error(errc::invalid_argument,
                      label + " is not pinned: it resolves to " + ref.str() + "@" +
                          top->digest.str() +
                          " now; name it by that digest, or pass --allow-unpinned");
    }
  }
  img.pinned = ref.name + "@" + top->digest.str();

  auto refs = oci::parse_manifest(top->body, top->content_type);
  if (!refs) {
    co_return error(errc::invalid_argument,
                    label + ": manifest " + top->digest.str() + ": " + refs.error().message);
  }
  document manifest = std::move(*top);
  if (refs->is_index) {
    auto pick = pick_platform(manifest.body, manifest.content_type, *host_);
    if (!pick) {
      co_return error(errc::invalid_argument,
                      label + ": the index " + manifest.digest.str() + ": " + pick.error().message);
    }
    img.index_digest = manifest.digest;
    img.platform = pick->platform;
    const std::string m_url = url(ref.name, "manifests", pick->digest.str());
    // Every kind, so that an index naming another index is told as such below.
    auto m =
        co_await get_document(m_url, oci::kAllManifests, kMaxManifest, tally.get(), kManifestRoute);
    if (!m) co_return with_prefix(m.error(), label);
    if (m->digest != pick->digest) {
      co_return error(errc::digest_mismatch, label + ": GET " + m_url +
                                                 ": the manifest's sha256 is " + m->digest.str() +
                                                 ", not the digest asked for");
    }
    refs = oci::parse_manifest(m->body, m->content_type);
    if (!refs) {
      co_return error(errc::invalid_argument,
                      label + ": manifest " + m->digest.str() + ": " + refs.error().message);
    }
    if (refs->is_index) {
      co_return error(errc::invalid_argument, label + ": the index " + manifest.digest.str() +
                                                  " names another index, " + m->digest.str() +
                                                  ", for " + pick->platform +
                                                  "; pantry runs image manifests only");
    }
    manifest = std::move(*m);
  }
  img.manifest_digest = manifest.digest;
  const std::string where = label + ": manifest " + manifest.digest.str();
  if (refs->blobs.empty()) co_return error(errc::invalid_argument, where + " has no config");

  const oci::descriptor& config = refs->blobs.front();
  for (std::size_t i = 1; i < refs->blobs.size(); ++i) {
    const auto& d = refs->blobs[i];
    if (auto why = layer_media_type_refusal(d.media_type)) {
      co_return error(errc::invalid_argument, where + ": layer " + std::to_string(i) + " of " +
                                                  std::to_string(refs->blobs.size() - 1) + " (" +
                                                  d.digest.str() + "): " + *why);
    }
  }
  if (config.size > kMaxConfig) {
    co_return error(errc::invalid_argument, where + ": the config " + config.digest.str() +
                                                " has " + std::to_string(config.size) +
                                                " bytes; pantry reads configs of at most " +
                                                std::to_string(kMaxConfig));
  }
  const std::string c_url = url(ref.name, "blobs", config.digest.str());
  // One byte over the size the manifest gives, so that a longer blob is told apart.
  auto c = co_await get_document(c_url, "", static_cast<std::size_t>(config.size) + 1, tally.get(),
                                 kBlobRoute);
  if (!c) co_return with_prefix(c.error(), label);
  if (c->digest != config.digest || c->body.size() != config.size) {
    co_return error(errc::digest_mismatch,
                    label + ": GET " + c_url + ": the config's sha256 is " + c->digest.str() +
                        " (" + std::to_string(c->body.size()) + " bytes), not " +
                        config.digest.str() + " (" + std::to_string(config.size) + " bytes)");
  }
  img.config_digest = config.digest;
  img.config_json = std::move(c->body);
  auto parsed = parse_image_config(img.config_json);
  if (!parsed) co_return with_prefix(parsed.error(), where);
  img.config = std::move(*parsed);
  auto rootfs = parse_image_rootfs(img.config_json);
  if (!rootfs) co_return with_prefix(rootfs.error(), where);
  if (!img.index_digest) {
    img.platform = rootfs->platform.str();
    // An image of another platform would only fail with "exec format error" once it runs.
    if (!rootfs->platform.os.empty() && !rootfs->platform.architecture.empty() &&
        !platform_runs_on(rootfs->platform, *host_)) {
      co_return error(errc::invalid_argument,
                      label + " is built for " + img.platform + "; this host is " + host_->str());
    }
  }
  const std::size_t layer_count = refs->blobs.size() - 1;
  if (rootfs->diff_ids.size() != layer_count) {
    co_return error(errc::invalid_argument, where + " lists " + std::to_string(layer_count) +
                                                " layers but its config " + config.digest.str() +
                                                " has " + std::to_string(rootfs->diff_ids.size()) +
                                                " diff IDs");
  }
  for (std::size_t i = 0; i < layer_count; ++i) {
    const auto& d = refs->blobs[i + 1];
    img.layers.push_back(resolved_layer{d.digest, d.media_type, d.size, rootfs->diff_ids[i]});
  }
  co_return img;
}

asio::awaitable<result<layer_lease>> puller_impl::unpack_blocking(cache::digest diff_id,
                                                                  std::string media_type,
                                                                  layer_source source) {
  co_return layers_->unpack(diff_id, media_type, source);
}

asio::awaitable<result<layer_lease>> puller_impl::lease_layer(
    const resolved_image& img, std::size_t index, asio::any_io_executor io,
    const std::shared_ptr<proxy::traffic_tally>& tally) {
  const resolved_layer& layer = img.layers[index];
  const std::string what = "image " + img.reference.str() + ": layer " + std::to_string(index + 1) +
                           " of " + std::to_string(img.layers.size()) + " (" + layer.digest.str() +
                           ")";
  auto have = layers_->acquire(layer.diff_id);
  if (have) co_return std::move(*have);
  auto fetch = std::make_shared<layer_fetch>(
      shared_from_this(), io, url(img.repository, "blobs", layer.digest.str()), layer, tally);
  layer_source source = [fetch](std::span<std::byte> out) { return fetch->read(out); };
  auto unpack = unpack_blocking(layer.diff_id, layer.media_type, std::move(source));
  auto lease = co_await asio::co_spawn(blocking_, std::move(unpack), asio::use_awaitable);
  fetch->close();
  if (!lease) co_return with_prefix(lease.error(), what);
  co_return lease;
}

asio::awaitable<result<std::vector<layer_lease>>> puller_impl::unpack_layers(
    const resolved_image& img, std::shared_ptr<proxy::traffic_tally> tally) {
  auto io = co_await asio::this_coro::executor;
  std::vector<layer_lease> leases(img.layers.size());
  std::optional<error> failed;
  std::size_t next = 0;
  // Workers on this coroutine's executor take the layers in order, so the base layers come
  // first; the state above is theirs to share because they run on that one executor. Three of
  // them: enough to overlap the network with decompression, few enough not to take every thread
  // of the blocking pool.
  auto worker = [&]() -> asio::awaitable<void> {
    while (!failed && next < img.layers.size()) {
      const std::size_t i = next++;
      auto lease = co_await lease_layer(img, i, io, tally);
      if (!lease) {
        if (!failed) failed = std::move(lease.error());
        co_return;
      }
      leases[i] = std::move(*lease);
    }
  };
  auto all = worker() && worker() && worker();
  co_await std::move(all);
  if (failed) co_return std::move(*failed);
  co_return leases;
}

result<std::size_t> layer_fetch::on_io(asio::awaitable<result<std::size_t>> step) {
  try {
    auto done = asio::co_spawn(io_, std::move(step), asio::use_future);
    if (done.wait_for(kBridgeWait) != std::future_status::ready) {
      return error(errc::io_error, "GET " + url_ + ": no answer from the I/O thread in " +
                                       std::to_string(kBridgeWait.count()) + " minutes");
    }
    return done.get();
  } catch (const std::exception& e) {
    return error(errc::io_error, "GET " + url_ + ": " + e.what());
  }
}

asio::awaitable<result<std::size_t>> layer_fetch::open_step() {
  auto self = shared_from_this();
  auto res = co_await puller_->get(url_, "");
  if (!res) co_return res.error();
  outcome_ = served_as(*res);
  response_.emplace(std::move(*res));
  co_return std::size_t{0};
}

asio::awaitable<result<std::size_t>> layer_fetch::read_step(std::size_t max) {
  auto self = shared_from_this();
  auto n = co_await response_->read_some(std::span(chunk_).first(max));
  co_return n;
}

result<std::size_t> layer_fetch::read(std::span<std::byte> out) {
  if (failed_) return *failed_;
  if (ended_) return std::size_t{0};
  auto n = next(out);
  if (!n) failed_ = n.error();
  return n;
}

result<std::size_t> layer_fetch::next(std::span<std::byte> out) {
  if (!response_) {
    auto opened = on_io(open_step());
    if (!opened) return opened.error();
  }
  auto n = on_io(read_step(std::min(out.size(), chunk_.size())));
  if (!n) return n.error();
  if (*n == 0) {
    ended_ = true;
    const cache::digest got = hasher_.finish();
    if (got != layer_.digest || bytes_ != layer_.size) {
      return error(errc::digest_mismatch, "GET " + url_ + ": the blob's sha256 is " + got.str() +
                                              " (" + std::to_string(bytes_) + " bytes), not " +
                                              layer_.digest.str() + " (" +
                                              std::to_string(layer_.size) + " bytes)");
    }
    if (tally_) tally_->add(kBlobRoute, outcome_, bytes_);
    return std::size_t{0};
  }
  std::memcpy(out.data(), chunk_.data(), *n);
  hasher_.update(std::span<const std::byte>(chunk_.data(), *n));
  bytes_ += *n;
  if (bytes_ > layer_.size) {
    return error(errc::size_mismatch, "GET " + url_ + ": the blob has more than the " +
                                          std::to_string(layer_.size) +
                                          " bytes the manifest gives");
  }
  return *n;
}

}  // namespace

std::shared_ptr<image_puller> image_puller::create(std::shared_ptr<proxy::client> client,
                                                   std::string base_url,
                                                   std::optional<std::string> authorization,
                                                   std::shared_ptr<layer_store> layers,
                                                   asio::any_io_executor blocking) {
  return std::make_shared<puller_impl>(std::move(client), std::move(base_url),
                                       std::move(authorization), std::move(layers),
                                       std::move(blocking));
}

}  // namespace pantry::orchestrator::runner
