#pragma once

// A bench for the protocol services (pypi::service, oci::service) that needs no server, no
// network peer of its own kind and no wall-clock waits: a fake proxy::server that records the
// routes a service installs and dispatches a request to the longest prefix, a fake
// proxy::exchange that holds the request and records the whole response, a scripted upstream,
// and the real cache store (in a temp dir; see Races below), flight table, metrics registry and
// upstream client.
//
// The upstream is a small HTTP/1.1 server on 127.0.0.1 (a thread of its own) that answers from a
// table the test fills, and the services reach it through the real proxy::client. A fake client
// cannot stand in for it: proxy::response is built from a private impl that only the real client
// makes, and the flight table fetches through a proxy::client too.
//
// Time: the services read the system clock (cache::clock), so a test makes an entry expired with
// a TTL of 0 in the config and keeps it fresh with a long one; nothing sleeps.
//
// Races: requests run on one thread, so a client's look in the cache and its join of a fetch
// happen together. To put another client's whole fetch between the two (the check-then-act
// window a loaded server shows now and then), a test takes a snapshot() of the cache, serves the
// other client, and lets the next request look_up_as_of() the snapshot: its first look at each
// item answers as the cache stood then, and every look after that sees the cache as it is.
//
// Only public headers of the services are used, so the tests pin what a client sees, not how
// the services are built.

#include "pantry/cache/store.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/flight.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/server.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace pantry::proxy {
// Prints an outcome by name in assertion messages (GoogleTest finds it by argument lookup).
inline void PrintTo(cache_outcome o, std::ostream* os) {
  *os << to_string(o);
}
}  // namespace pantry::proxy

namespace pantry::registry::testing {

namespace asio = boost::asio;
namespace http = boost::beast::http;

// The Warning header of each situation, the same for both protocols (registry/src/freshness.h,
// which these tests do not include: they see the services only through their public headers).
// 110: an answer served stale in offline mode or past its TTL; 111: revalidation failed.
inline constexpr std::string_view kWarningStale = "110 pantry \"Response is Stale\"";
inline constexpr std::string_view kWarningRevalidationFailed = "111 pantry \"Revalidation Failed\"";

using header_lines = std::vector<std::pair<std::string, std::string>>;

// ---- the client's side ------------------------------------------------------------------------

// A request as a client sends it.
struct fake_request {
  http::verb method = http::verb::get;
  std::string target;  // path and query: "/simple/demo/", "/v2/app/tags/list?n=2"
  // In order; a name may repeat (skopeo's several Accept lines). A "Host: pantry.test" line is
  // added when none is given, as every HTTP/1.1 client sends one.
  header_lines headers;
  std::string body;
};

// Everything a handler sent back through its exchange.
struct recorded_response {
  unsigned status = 0;    // 0: the handler sent nothing
  http::fields headers;   // as given to respond() or begin() (Content-Length as the server sets it)
  std::string body;       // the body bytes written (none for HEAD, 204 and 304, as on a socket)
  bool complete = false;  // a whole response went out: respond(), or begin() … end() in full
  bool reset = false;     // reset() was called: the client's connection was aborted
  proxy::cache_outcome outcome = proxy::cache_outcome::none;
  std::string route;  // the route label; the matched prefix unless the handler set one
  // Breaches of the exchange's contract (a second response, bytes past Content-Length, end()
  // without begin(), no response at all, an exception); empty for a well-behaved handler.
  std::vector<std::string> misuse;

  // The value of header `name` ("" when absent).
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
  // Status, headers, the start of the body and the flags, for assertion messages.
  std::string describe() const;
};
std::ostream& operator<<(std::ostream& os, const recorded_response& r);

// The exchange a handler gets: serves the request's body from memory and records the response,
// enforcing the rules the real server enforces (one response, Content-Length kept, no body for
// HEAD, 204 and 304).
class fake_exchange final : public proxy::exchange {
 public:
  explicit fake_exchange(fake_request req);

  const http::request_header<>& request() const noexcept override { return header_; }
  std::vector<std::string_view> header_values(http::field name) const override;
  const std::string& peer() const noexcept override { return peer_; }
  asio::awaitable<result<std::size_t>> read_body(std::span<std::byte> out) override;
  asio::awaitable<proxy::error_code> respond(http::response<http::string_body> res) override;
  asio::awaitable<proxy::error_code> begin(http::response_header<> header,
                                           std::optional<std::uint64_t> length) override;
  asio::awaitable<proxy::error_code> write(std::span<const std::byte> bytes) override;
  asio::awaitable<proxy::error_code> write_blob(cache::blob_reader& blob, std::uint64_t offset,
                                                std::uint64_t length) override;
  asio::awaitable<proxy::error_code> end() override;
  void reset() noexcept override;
  void set_outcome(proxy::cache_outcome o) noexcept override { out_.outcome = o; }
  void set_route(std::string_view route) override { out_.route = std::string(route); }

  // What was sent so far.
  const recorded_response& recorded() const noexcept { return out_; }
  recorded_response& recorded() noexcept { return out_; }
  // Called by the harness once the handler has returned.
  void finish();

 private:
  enum class state { none, begun, done };
  proxy::error_code misuse(std::string what);
  bool body_allowed(unsigned status) const;

  http::request_header<> header_;
  std::string body_;
  std::size_t body_read_ = 0;
  std::string peer_ = "127.0.0.1:40000";
  state state_ = state::none;
  bool skip_body_ = false;               // HEAD, 204, 304
  std::optional<std::uint64_t> length_;  // the Content-Length begin() announced
  recorded_response out_;
};

// Records the routes a service installs; dispatch() picks the longest prefix of a request's path,
// as proxy::server does. Installing a prefix twice replaces its handler.
class fake_server final : public proxy::server {
 public:
  explicit fake_server(asio::any_io_executor ex) : ex_(std::move(ex)) {}

  void route(std::string prefix, proxy::handler h) override;
  std::uint16_t port() const noexcept override { return 0; }
  asio::any_io_executor executor() noexcept override { return ex_; }
  void run() override {}
  void stop() noexcept override {}
  void set_access_log(bool) noexcept override {}  // it logs nothing
  // Services do not adopt listeners: closes `fd` and refuses (errc::invalid_argument).
  result<std::unique_ptr<proxy::listener>> adopt_listener(int fd,
                                                          proxy::listener_options opt) override;

  // The installed prefixes, longest first.
  std::vector<std::string> prefixes() const;
  // The handler and prefix for `target`'s path, or nullopt when no route matches.
  std::optional<std::pair<std::string, proxy::handler>> dispatch(std::string_view target) const;
  // Drops every handler (and with them the services they keep alive).
  void clear() { routes_.clear(); }

 private:
  asio::any_io_executor ex_;
  std::vector<std::pair<std::string, proxy::handler>> routes_;  // longest prefix first
};

// ---- the upstream -----------------------------------------------------------------------------

// How the scripted upstream answers one request.
struct upstream_answer {
  enum class fault {
    none,
    close,         // reads the request, then closes the connection without a byte
    break_midway,  // sends the header (full Content-Length) and half the body, then a RST
    hang,          // reads the request and never answers (until pantry's client gives up)
  };
  unsigned status = 200;
  // Sent as given, in order. Content-Length is added from `body` unless given here.
  header_lines headers;
  std::string body;  // not sent for HEAD (its Content-Length is), 204 and 304
  fault what = fault::none;
  // When set, a request whose Authorization is not exactly this gets a 401 instead, with
  // `challenge` as its WWW-Authenticate: a registry that wants a token.
  std::string required_authorization;
  std::string challenge;
};

// A way an upstream fails, for tests that try several.
struct upstream_failure {
  std::string what;     // for assertion messages: "503", "connection closed"
  unsigned status = 0;  // an error status, or 0 for `how`
  upstream_answer::fault how = upstream_answer::fault::none;
};
// The ways tried by default: 503, 429, a connection closed before the answer, and (with
// `broken_body`) a body broken off midway.
std::vector<upstream_failure> upstream_failures(bool broken_body);

// One request the upstream got.
struct upstream_request {
  std::string method;  // "GET", "HEAD"
  std::string target;  // path and query as sent
  header_lines headers;

  // The value of the first header line named `name` (any case), "" when absent.
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
};
std::ostream& operator<<(std::ostream& os, const upstream_request& r);

// An HTTP/1.1 server on 127.0.0.1 and a free port, on a thread of its own, that answers from a
// table: by (method, target) first, then by target for any method. An unscripted target gets a
// 404 whose body says so. It records every request, keeps connections alive, and is safe to
// script and read from the test thread while it serves.
class fake_upstream {
 public:
  fake_upstream();
  ~fake_upstream();
  fake_upstream(const fake_upstream&) = delete;
  fake_upstream& operator=(const fake_upstream&) = delete;

  // "http://127.0.0.1:<port>": prefix it to a target to make an upstream URL.
  std::string base() const;
  std::uint16_t port() const;

  // Answers `target` (path and query) with `a`, for every method or only `method`; replaces an
  // earlier script of that key.
  void script(std::string target, upstream_answer a);
  void script(http::verb method, std::string target, upstream_answer a);
  // script() of a plain answer: `status` with `headers` and `body`.
  void script_status(std::string target, unsigned status, header_lines headers = {},
                     std::string body = "scripted failure\n");
  // Answers `target` with `f`: its status, or `good` spoiled by its fault.
  void script_failure(std::string target, const upstream_failure& f, upstream_answer good);
  // Drops every script.
  void clear_scripts();

  // Every request so far, in arrival order.
  std::vector<upstream_request> requests() const;
  // The requests for `target` (any method, or `method`).
  std::vector<upstream_request> requests_for(std::string_view target) const;
  std::vector<upstream_request> requests_for(http::verb method, std::string_view target) const;
  std::size_t request_count() const;
  // One line per request ("GET /simple/demo/"), for assertion messages.
  std::string describe_requests() const;

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(asio::ip::tcp::socket s);
  upstream_answer answer_for(const upstream_request& r);

  asio::io_context ctx_;  // destroyed after the acceptor and the connections it holds
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, upstream_answer> scripts_;  // guarded by mutex_
  std::vector<upstream_request> requests_;                                  // guarded by mutex_
};

// A base URL where nothing listens: a connection there is refused.
std::string refused_base();

// ---- the cache --------------------------------------------------------------------------------

// What the cache held at one moment: every entry, and which of the blobs they name were not
// complete.
struct cache_snapshot {
  std::map<std::string, cache::entry, std::less<>> entries;
  std::unordered_set<cache::digest, cache::digest_hash> missing_blobs;
};

// The harness's cache: the real store, whose lookups can be made to answer as of a snapshot
// (service_harness::look_up_as_of). Defined in service_harness.cpp.
class recalling_store;

// ---- the bench --------------------------------------------------------------------------------

// Everything a service's create() takes, with the cache in a fresh temp dir, and a driver that
// runs one request at a time on the test's thread.
class service_harness {
 public:
  // `upstream_header_timeout` bounds how long a hanging upstream takes to fail a request.
  explicit service_harness(
      std::chrono::milliseconds upstream_header_timeout = std::chrono::milliseconds(400));
  ~service_harness();
  service_harness(const service_harness&) = delete;
  service_harness& operator=(const service_harness&) = delete;

  fake_upstream& upstream() noexcept { return upstream_; }
  fake_server& server() noexcept { return *server_; }
  const std::shared_ptr<cache::store>& store() const noexcept { return store_; }
  const std::shared_ptr<proxy::client>& client() const noexcept { return client_; }
  const std::shared_ptr<proxy::flight_table>& flights() const noexcept { return flights_; }
  const std::shared_ptr<proxy::metrics_registry>& metrics() const noexcept { return metrics_; }
  asio::any_io_executor blocking() { return pool_->get_executor(); }
  const std::filesystem::path& data_dir() const noexcept { return dir_; }

  // Runs `req` through the installed route (on a strand of the harness's io_context, driven here)
  // until the handler returns and every flight has ended, and returns what it sent. A request
  // that no route takes records misuse; one still running after 10 s fails the test.
  recorded_response serve(fake_request req);
  // Starts every request of `reqs` before any of them runs, then drives them all to the end as
  // serve() does: concurrent clients on one io_context, as on a server's connections. Answers
  // in the order of `reqs`.
  std::vector<recorded_response> serve_together(std::vector<fake_request> reqs);
  // serve() of a GET (or HEAD) with `headers`.
  recorded_response get(std::string target, header_lines headers = {});
  recorded_response head(std::string target, header_lines headers = {});

  // Complete blobs in the cache.
  std::uint64_t blob_count();

  // The cache as it stands now.
  cache_snapshot snapshot();
  // From now on, the first lookup of each entry (get_entry) answers what `past` held under its
  // key, and the first lookup of each blob `past` found missing (open_blob or stat_blob)
  // answers errc::not_found; every later lookup sees the cache as it is. The request served
  // next acts as a client that looked in the cache when `past` was taken, and went on (joined or
  // started a fetch) only after the requests served since had ended theirs. Until the next
  // call, or look_up_now().
  void look_up_as_of(cache_snapshot past);
  // Every lookup sees the cache as it is.
  void look_up_now();
  // Serves `first` (client A), then `second` (client B) as a client that looked in the cache
  // before A's request began and went on only after A's request, and any fetch it started, had
  // ended: snapshot(), serve(first), look_up_as_of(), serve(second), look_up_now(). Returns A's
  // and B's answers.
  std::pair<recorded_response, recorded_response> serve_racing(fake_request first,
                                                               fake_request second);
  // The sum of the values of every series of metric `name` whose labels include `labels`, read
  // from the rendered text (so a label added later does not break a test).
  double metric(std::string_view name, const proxy::labels& labels = {}) const;

 private:
  // Drives the io_context until every flight has ended and let go of what it holds; false when
  // one still runs after the request limit.
  bool settle();
  // Runs the io_context until `done()` holds; false past `limit`.
  template <class Pred>
  bool drive(Pred done, std::chrono::milliseconds limit);

  // Torn down in the destructor's body, in an order of its own: handlers, then what they use,
  // then the threads and the io_context (with any coroutine frames left in it), then the cache,
  // and the temp dir last.
  std::filesystem::path dir_;
  fake_upstream upstream_;
  std::unique_ptr<asio::thread_pool> pool_;
  std::unique_ptr<asio::io_context> ctx_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::shared_ptr<recalling_store> recall_;
  std::shared_ptr<cache::store> store_;  // recall_
  std::shared_ptr<proxy::metrics_registry> metrics_;
  std::shared_ptr<proxy::client> client_;
  std::shared_ptr<proxy::flight_table> flights_;
  std::unique_ptr<fake_server> server_;
};

// ---- helpers for the tests --------------------------------------------------------------------

// The sha256 of `bytes`, as 64 lowercase hex digits.
std::string sha256_hex(std::string_view bytes);
// `n` bytes that differ for different seeds.
std::string pattern(std::size_t n, unsigned seed);

}  // namespace pantry::registry::testing
