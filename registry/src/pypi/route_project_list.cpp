// /simple/: the project list.

#include "pantry/registry/pypi/names.h"
#include "pantry/registry/pypi/simple.h"

#include "keys.h"
#include "routes.h"

#include <spdlog/spdlog.h>

#include <map>

namespace pantry::registry::pypi {

namespace asio = boost::asio;
using proxy::exchange;

project_list::project_list(std::shared_ptr<const context> ctx, std::shared_ptr<index_cache> index,
                           std::shared_ptr<const hosted_route> hosted)
    : ctx_(std::move(ctx)), index_(std::move(index)), hosted_(std::move(hosted)) {}

asio::awaitable<void> project_list::serve(exchange& ex) {
  std::map<std::string, std::string> names;  // normalized -> name as an index spells it
  std::string_view warning;
  // Hosted names first: theirs is the spelling /simple/<project>/ serves.
  if (auto added = hosted_->add_names(names); !added) {
    const error why = added.error();
    co_await plain(ex, http::status::service_unavailable, why.message);
    co_return;
  }
  for (const auto& u : ctx_->cfg.upstreams) {
    const config::pypi_upstream* up = &u;
    auto self = shared_from_this();
    index_cache::fetch_fn fetch = [self, up](const std::optional<cache::entry>& existing) {
      return self->fetch_root(*up, existing);
    };
    // Named locals, not temporaries of the co_await expression (see CONTRIBUTING.md).
    std::string key = keys::root(u.name);
    std::string what = "the project list of " + u.name;
    auto got = co_await index_->resolve(u, std::move(key), std::move(what), std::move(fetch));
    if (!got.entry || got.entry->status != 200) {
      if (!got.entry && !ctx_->cfg.offline) {
        spdlog::warn("pypi: /simple/ lists only cached projects of {}: {}", u.name,
                     got.entry.error().message);
        warning = freshness::kWarningRevalidationFailed;
      }
      continue;
    }
    if (!got.warning.empty()) warning = got.warning;
    auto text = read_blob_text(*ctx_->store, got.entry->attribute(kAttrNames));
    if (!text) continue;
    for (std::string_view rest = *text; !rest.empty();) {
      auto nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      if (!line.empty()) names.try_emplace(normalize_project_name(line), line);
    }
  }
  auto walked = ctx_->store->for_each_entry(keys::kPagePrefix,
                                            [&](std::string_view key, const cache::entry& e) {
                                              if (e.status == 200) {
                                                std::string name(keys::project_of_page(key));
                                                names.try_emplace(name, name);
                                              }
                                              return true;
                                            });
  if (!walked) {
    co_await plain(ex, http::status::internal_server_error, walked.error().message);
    co_return;
  }
  std::vector<std::string> list;
  list.reserve(names.size());
  for (auto& [normal, name] : names)
    list.push_back(std::move(name));
  auto chosen = negotiate(ex.header_values(http::field::accept));
  if (!chosen) chosen = negotiated{representation::html, kContentTypeTextHtml};
  http::response<http::string_body> res{http::status::ok, 11};
  res.set(http::field::content_type, chosen->content_type);
  res.set(http::field::vary, "Accept");
  if (!warning.empty()) res.set(http::field::warning, warning);
  res.body() =
      chosen->rep == representation::json ? render_root_json(list) : render_root_html(list);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<index_cache::answer> project_list::fetch_root(
    const config::pypi_upstream& u, std::optional<cache::entry> existing) {
  const std::string key = keys::root(u.name);
  proxy::request req;
  req.url = u.url;
  req.headers.set(http::field::accept, kUpstreamAccept);
  auto got = co_await index_->fetch(u, key, req, existing);
  if (auto* settled = std::get_if<index_cache::answer>(&got)) co_return std::move(*settled);
  auto& reply = std::get<index_cache::fetched>(got);
  auto names = reply.content_type.find("json") != std::string::npos ? parse_root_json(reply.body)
                                                                    : parse_root_html(reply.body);
  if (!names) {
    co_return index_->upstream_failed(
        u, existing,
        error(errc::io_error, "index " + u.name + " sent a project list (" + req.url +
                                  ") that pantry cannot read: " + names.error().message));
  }
  std::string text;
  for (const auto& n : *names) {
    if (is_valid_project_name(n)) text += n + "\n";
  }
  cache::entry e = reply.fresh;
  cache::store& store = *ctx_->store;
  auto stored = co_await detail::off_thread(ctx_->blocking, [&]() -> result<void> {
    auto d = store.put_blob(std::as_bytes(std::span(text)), "text/plain; charset=utf-8");
    if (!d) return d.error();
    e.attributes.emplace_back(std::string(kAttrNames), d->str());
    return store.put_entry(key, e);
  });
  if (!stored) co_return index_cache::storage_failure(key, stored.error());
  co_return index_cache::stored(std::move(e));
}

}  // namespace pantry::registry::pypi
