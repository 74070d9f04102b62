// /files/<upstream>/<location>: files an index page listed, and their .metadata files.

#include "pantry/registry/pypi/file_path.h"
#include "pantry/registry/pypi/names.h"
#include "pantry/registry/pypi/wheel.h"

#include "keys.h"
#include "routes.h"

#include <boost/asio/this_coro.hpp>

#include <algorithm>

namespace pantry::registry::pypi {

namespace asio = boost::asio;
using detail::serve_blob;
using proxy::cache_outcome;
using proxy::exchange;

namespace {

// Body copies (a wheel fetched to make its METADATA) go through buffers of this size.
constexpr std::size_t kCopyBuffer = 256 * 1024;

}  // namespace

files_route::files_route(std::shared_ptr<const context> ctx, std::shared_ptr<simple_route> pages)
    : ctx_(std::move(ctx)), pages_(std::move(pages)) {}

asio::awaitable<void> files_route::handle(exchange& ex) {
  ex.set_route("pypi_files");
  const auto& req = ex.request();
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    co_await plain(ex, http::status::method_not_allowed, "files answer GET and HEAD only");
    co_return;
  }
  auto loc = parse_file_path(req.target());
  if (!loc) {
    co_await plain(ex, http::status::bad_request, loc.error().message);
    co_return;
  }
  const auto* u = ctx_->find_upstream(loc->upstream);
  if (!u) {
    co_await plain(ex, http::status::not_found,
                   "\"" + loc->upstream + "\" is not a configured PyPI upstream");
    co_return;
  }
  const std::string key = keys::file(u->name, loc->location);
  auto e = ctx_->store->get_entry(key);
  if (!e) e = co_await listed_by_page(*u, loc->location, key);
  if (!e) {
    if (!e.error().is(errc::not_found)) {
      const error why = e.error();
      co_await index_failure(ex, why);
      co_return;
    }
    co_await plain(ex, http::status::not_found,
                   std::string(req.target()) + " is not a file that an index page served by " +
                       "pantry lists (" + e.error().message +
                       "); pantry fetches only files that a project's /simple/ page lists");
    co_return;
  }
  if (!e->attribute(kAttrGenerate).empty() && !e->target) {
    co_await serve_generated_metadata(ex, *u, key, *e);
    co_return;
  }
  if (!e->target) {
    co_await plain(ex, http::status::not_found,
                   "no verifiable file at " + std::string(req.target()));
    co_return;
  }
  co_await serve_file(ex, *u, *e);
}

asio::awaitable<result<cache::entry>> files_route::listed_by_page(const config::pypi_upstream& u,
                                                                  std::string location,
                                                                  std::string key) {
  // Only a page can make a URL fetchable, and only a page of a project this upstream is asked
  // for: otherwise pantry would fetch whatever a client names under a configured host.
  auto project = project_of_file_location(location);
  if (!project) {
    co_return error(errc::not_found, "its file name names no project");
  }
  if (!u.hosted) {
    // A hosted project's files come from the hosted upstream alone.
    auto owner = co_await pages_->ask_owner(*project);
    if (owner.verdict.says == owner_verdict::kind::unknown) {
      co_return error(errc::io_error, std::move(owner.verdict.why));
    }
    if (owner.verdict.says == owner_verdict::kind::hosted) {
      co_return error(errc::not_found, "project \"" + *project + "\" is hosted in " +
                                           ctx_->hosted_upstream()->name + ", not asked of " +
                                           u.name);
    }
    const auto asked = ctx_->upstreams_for(*project);
    if (std::find(asked.begin(), asked.end(), &u) == asked.end()) {
      co_return error(errc::not_found, "project \"" + *project + "\" is not asked of " + u.name);
    }
  }
  auto page = co_await pages_->resolve_page(u, *project);
  if (!page.entry) co_return page.entry.error();
  auto e = ctx_->store->get_entry(key);
  if (!e) {
    co_return error(errc::not_found,
                    "the page of \"" + *project + "\" on " + u.name + " does not list it");
  }
  co_return e;
}

asio::awaitable<void> files_route::serve_file(exchange& ex, const config::pypi_upstream& u,
                                              const cache::entry& e) {
  const cache::digest id = *e.target;
  if (auto reader = ctx_->store->open_blob(id)) {
    ex.set_outcome(cache_outcome::hit);
    co_await serve_blob(ex, *reader, e.content_type);
    co_return;
  }
  if (ctx_->cfg.offline) {
    co_await plain(ex, http::status::not_found,
                   "the file " + id.str() + " is not cached and pypi.offline is true");
    co_return;
  }
  proxy::fetch_spec spec;
  spec.req.url = std::string(e.attribute(kAttrUrl));
  spec.req.headers.set(http::field::accept_encoding, "identity");
  spec.req.tls.ca_file = u.ca_file;
  spec.id = id;
  spec.media_type = e.content_type;
  spec.size = detail::recorded_size(e);
  bool joined = false;
  auto fl = ctx_->flights->join(spec, co_await asio::this_coro::executor, joined);
  if (!joined) {
    ctx_->report.sent(u.name);
  }
  ex.set_outcome(joined ? cache_outcome::coalesced : cache_outcome::miss);
  const detail::error_responder on_error = [](exchange& x, http::status s,
                                              std::string message) -> asio::awaitable<void> {
    co_await plain(x, s, std::move(message));
  };
  const http::fields no_extra;
  co_await detail::stream_flight(ex, fl, *ctx_->store, id, e.content_type, no_extra, on_error);
}

asio::awaitable<void> files_route::serve_generated_metadata(exchange& ex,
                                                            const config::pypi_upstream& u,
                                                            const std::string& key,
                                                            cache::entry e) {
  const std::string wheel_key = keys::file_of_metadata(key);
  auto we = ctx_->store->get_entry(wheel_key);
  if (!we || !we->target) {
    co_await plain(ex, http::status::not_found, "the wheel of " + key + " is not listed");
    co_return;
  }
  auto wheel = ctx_->store->open_blob(*we->target);
  if (!wheel && !ctx_->cfg.offline) {
    proxy::fetch_spec spec;
    spec.req.url = std::string(we->attribute(kAttrUrl));
    spec.req.headers.set(http::field::accept_encoding, "identity");
    spec.req.tls.ca_file = u.ca_file;
    spec.id = *we->target;
    spec.media_type = we->content_type;
    bool joined = false;
    auto fl = ctx_->flights->join(spec, co_await asio::this_coro::executor, joined);
    std::vector<std::byte> buf(kCopyBuffer);
    std::uint64_t offset = 0;
    for (;;) {
      auto n = co_await fl.read(offset, buf);
      if (!n) {
        co_await plain(ex, http::status::bad_gateway, n.error().message);
        co_return;
      }
      if (*n == 0) break;
      offset += *n;
    }
    wheel = ctx_->store->open_blob(*we->target);
  }
  if (!wheel) {
    co_await plain(ex, http::status::not_found, wheel.error().message);
    co_return;
  }
  std::string url(we->attribute(kAttrUrl));
  std::string filename = url.substr(url.rfind('/') + 1);
  auto made = co_await detail::off_thread(ctx_->blocking, [&]() -> result<cache::digest> {
    byte_source src;
    src.size = wheel->size();
    src.read_at = [&](std::uint64_t offset, std::span<std::byte> out) {
      return wheel->read(offset, out);
    };
    auto text = extract_wheel_metadata(src, filename);
    if (!text) return text.error();
    auto d = ctx_->store->put_blob(std::as_bytes(std::span(*text)), e.content_type);
    if (!d) return d.error();
    e.target = *d;
    if (auto put = ctx_->store->put_entry(key, e); !put) return put.error();
    return *d;
  });
  if (!made) {
    co_await plain(ex, http::status::bad_gateway, made.error().message);
    co_return;
  }
  auto reader = ctx_->store->open_blob(*made);
  if (!reader) {
    co_await plain(ex, http::status::service_unavailable, reader.error().message);
    co_return;
  }
  ex.set_outcome(cache_outcome::miss);
  co_await serve_blob(ex, *reader, e.content_type);
}

}  // namespace pantry::registry::pypi
