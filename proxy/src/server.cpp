#include "pantry/proxy/server.h"

#include "pantry/proxy/handover.h"

#include "pantry/text.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <limits>
#include <list>
#include <mutex>
#include <thread>
#include <utility>

namespace pantry::proxy {

namespace {

namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using token_t = asio::as_tuple_t<asio::use_awaitable_t<>>;
using socket_t = token_t::as_default_on_t<tcp::socket>;
using acceptor_t = token_t::as_default_on_t<tcp::acceptor>;
using timer_t = token_t::as_default_on_t<asio::steady_timer>;

// A handler's body bytes that the socket does not take at once are copied out of the map in
// pieces of this size (per connection, only while a blob is being written): large enough that
// each wait moves a good share of a socket buffer, small enough that thousands of slow clients
// do not add up to gigabytes.
constexpr std::size_t kCopyPiece = 256 * 1024;
// An unread request body up to this size is read and dropped after the response so that the
// connection can be kept; a larger one closes the connection instead.
constexpr std::uint64_t kDrainLimit = 1 << 20;
// After an error response that ends a connection (400, 431), what the client still sends is read
// and dropped for at most this long (and this much), so that closing with unread bytes does not
// send an RST that makes the client discard the response before reading it.
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr std::size_t kLingerBytes = 1 << 20;
constexpr std::size_t kBodyReadChunk = 64 * 1024;
// Per-connection cache of metric cells; past this many distinct series it starts over.
constexpr std::size_t kMaxCachedCells = 32;

constexpr std::string_view kUnmatchedRoute = "unmatched";
constexpr std::string_view kMalformedRoute = "malformed";
// Requests an adopted listener's filter refused (answered 403).
constexpr std::string_view kRefusedRoute = "refused";

const std::string kRequestsTotal = "pantry_http_requests_total";
const std::string kRequestsHelp = "HTTP requests served, by route and status";
const std::string kBytesTotal = "pantry_http_response_bytes_total";
const std::string kBytesHelp = "HTTP response body bytes sent, by route and cache outcome";
const std::string kOutcomesTotal = "pantry_cache_requests_total";
const std::string kOutcomesHelp =
    "Requests answered from the cache (hit, stale, revalidated) or from upstream (miss, "
    "coalesced), by route";

// Statuses whose responses never carry a body (RFC 9110, 6.4.1).
bool allows_body(unsigned status) {
  return status >= 200 && status != 204 && status != 304;
}

void append_number(std::string& out, std::uint64_t v, int base = 10) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, base);
  out.append(buf, ec == std::errc{} ? end : buf);
}

// Appends `v` with CR and LF replaced: a value taken from a peer must never split a response.
void append_field_text(std::string& out, std::string_view v) {
  if (v.find_first_of("\r\n") == std::string_view::npos) {
    out.append(v);
    return;
  }
  for (char c : v)
    out += (c == '\r' || c == '\n') ? ' ' : c;
}

void serialize_header(std::string& out, const http::response_header<>& h) {
  out += h.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  append_number(out, h.result_int());
  out += ' ';
  std::string_view reason = h.reason();
  if (reason.empty()) reason = http::obsolete_reason(static_cast<http::status>(h.result_int()));
  append_field_text(out, reason);
  out += "\r\n";
  for (const auto& f : h) {
    append_field_text(out, f.name_string());
    out += ": ";
    append_field_text(out, f.value());
    out += "\r\n";
  }
  out += "\r\n";
}

// Request-side parse errors that deserve a 400 (the rest are the peer going away).
bool is_malformed(const error_code& ec) {
  if (ec.category() != http::make_error_code(http::error::bad_method).category()) return false;
  return ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::short_read;
}

std::string peer_string(const tcp::endpoint& ep) {
  std::string out;
  if (ep.address().is_v6()) {
    out = "[" + ep.address().to_string() + "]:";
  } else {
    out = ep.address().to_string() + ":";
  }
  append_number(out, ep.port());
  return out;
}

// Completion of the server's own coroutines, which catch what handlers throw: anything that
// still arrives here is a bug of the server.
struct spawn_done {
  void operator()(std::exception_ptr e) const {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("proxy: bug: a server coroutine ended with an exception: {}", ex.what());
    } catch (...) {
      spdlog::error("proxy: bug: a server coroutine ended with an unknown exception");
    }
  }
};

// Up to a few buffers written with one gather write; empty ones are skipped.
struct out_buffers {
  std::array<asio::const_buffer, 4> b;
  std::size_t n = 0;
  void add(asio::const_buffer x) {
    if (x.size() > 0) b[n++] = x;
  }
  void add(std::string_view s) { add(asio::const_buffer(s.data(), s.size())); }
};

class server_impl;

// An adopted listener's state, shared by the handle its caller holds, the server's record of it
// and every connection accepted through it, so that whichever of them goes last frees it.
struct adopted_state {
  adopted_state(listener_options opt, int socket, std::uint16_t bound_port)
      : name(std::move(opt.name)),
        allow(std::move(opt.allow)),
        traffic(std::move(opt.traffic)),
        fd(socket),
        port(bound_port) {}

  const std::string name;
  const std::function<bool(http::verb, std::string_view)> allow;
  const std::shared_ptr<traffic_tally> traffic;
  const int fd;  // the listening socket, owned by the server's acceptor; usable while fd_open
  const std::uint16_t port;
  // Set (under mutex) by listener::close(): no connection is accepted any more, and those accepted
  // are reset.
  std::atomic<bool> closed{false};

  std::mutex mutex;
  // The server closes the descriptor only after clearing this, so that close() on another thread
  // never shuts down a descriptor number reused since.
  bool fd_open = true;         // guarded by mutex
  server_impl* srv = nullptr;  // guarded by mutex; null once the server is being destroyed
};

// The server's side of an adopted listener. The acceptor is used on the accept strand only; the
// accept loop's frame holds this while it is suspended on the acceptor.
struct adopted_acceptor {
  adopted_acceptor(const asio::strand<asio::io_context::executor_type>& strand,
                   std::shared_ptr<adopted_state> s)
      : acceptor(strand), state(std::move(s)) {}

  acceptor_t acceptor;
  const std::shared_ptr<adopted_state> state;
};

// What adopt_listener() returns.
class listener_handle final : public listener {
 public:
  explicit listener_handle(std::shared_ptr<adopted_state> state) : state_(std::move(state)) {}
  ~listener_handle() override { close(); }

  std::uint16_t port() const noexcept override { return state_->port; }
  void close() noexcept override;

 private:
  std::shared_ptr<adopted_state> state_;
};

struct route_entry {
  std::string prefix;
  handler h;
};

struct metric_cell {
  std::string route;
  unsigned key = 0;
  std::atomic<std::uint64_t>* cell = nullptr;
};

// One client connection and, one at a time, the exchange it is serving. Runs on its own strand:
// the session coroutine (read a request, call a handler, write, loop) and a watchdog (a chain of
// timer completions) that closes the socket when a network wait passes its deadline.
class connection final : public exchange, public std::enable_shared_from_this<connection> {
 public:
  // `listener`: the adopted listener it came through, or null for the main port.
  connection(server_impl& srv, socket_t socket, std::string peer,
             std::shared_ptr<adopted_state> listener);
  ~connection() override;

  static asio::awaitable<void> run(std::shared_ptr<connection> self);
  // On the strand: one round of the watchdog; it re-arms timer_ with a completion that calls it
  // again, until the connection is closed or its wait timed out.
  static void watchdog(std::shared_ptr<connection> self);

  asio::any_io_executor executor() { return socket_.get_executor(); }
  const adopted_state* listener() const noexcept { return listener_.get(); }
  // On the strand: the server is stopping; an idle connection closes now.
  void on_stop();

  std::list<std::weak_ptr<connection>>::iterator registration;

  // exchange
  const http::request_header<>& request() const noexcept override { return parser_->get(); }
  std::vector<std::string_view> header_values(http::field name) const override;
  const std::string& peer() const noexcept override { return peer_; }
  asio::awaitable<result<std::size_t>> read_body(std::span<std::byte> out) override;
  asio::awaitable<error_code> respond(http::response<http::string_body> res) override;
  asio::awaitable<error_code> begin(http::response_header<> header,
                                    std::optional<std::uint64_t> length) override;
  asio::awaitable<error_code> write(std::span<const std::byte> bytes) override;
  asio::awaitable<error_code> write_blob(cache::blob_reader& blob, std::uint64_t offset,
                                         std::uint64_t length) override;
  asio::awaitable<error_code> end() override;
  void reset() noexcept override;
  void set_outcome(cache_outcome o) noexcept override { outcome_ = o; }
  void set_route(std::string_view route) override { route_label_ = route; }
  traffic_tally* traffic() const noexcept override {
    return listener_ ? listener_->traffic.get() : nullptr;
  }

 private:
  enum class phase { reading_header, busy };
  enum class state { none, begun, done };
  enum class framing { none, length, chunked, until_close };

  asio::awaitable<void> serve();
  asio::awaitable<void> serve_exchange();
  asio::awaitable<void> reject(http::status status, std::string body);
  asio::awaitable<void> linger_close();
  void finish();
  // Whether the listener's filter lets the current request through.
  bool admitted(std::string_view path) const;
  // The 403 for a request the filter refused.
  http::response<http::string_body> refusal(std::string_view path) const;

  // `parsed`: a whole request header was read (not so for reject()).
  void start_exchange(bool parsed);
  void end_exchange(std::string_view method, std::string_view target);
  void finish_header(http::response_header<>& h);
  bool body_drainable() const;

  // Writes everything in `bufs`: first without waiting, as much as the socket takes, then with
  // waits of at most write_timeout each. Adds the bytes written to `written`.
  asio::awaitable<error_code> write_all(out_buffers& bufs, std::size_t& written);
  // Writes what is pending (a held-back header, a chunk's trailing CRLF) plus `body`.
  asio::awaitable<error_code> write_body(std::span<const std::byte> body, bool chunk);
  error_code fail(error_code ec);
  error_code misuse(std::string_view what);

  void start_wait(std::chrono::milliseconds timeout, bool idle = false);
  void end_wait() { waiting_ = false; }
  void close_socket() noexcept {
    error_code ec;
    socket_.close(ec);
  }

  std::atomic<std::uint64_t>& cell(std::vector<metric_cell>& cells, const std::string& name,
                                   const std::string& help, std::string_view label_name,
                                   unsigned key, std::string_view label_value);

  server_impl& srv_;
  const server_options& opt_;
  socket_t socket_;
  timer_t timer_;
  std::string peer_;
  const std::shared_ptr<adopted_state> listener_;
  beast::flat_buffer buffer_;  // kept across requests: it may hold the next pipelined one
  std::optional<http::request_parser<http::buffer_body>> parser_;

  // Deadline of the network wait in progress (watched by the watchdog, same strand).
  steady::time_point deadline_ = steady::time_point::max();
  steady::time_point armed_ = steady::time_point::max();
  bool waiting_ = false;
  bool idle_wait_ = false;
  bool timed_out_ = false;
  bool closed_ = false;
  phase phase_ = phase::busy;

  // The current exchange.
  state state_ = state::none;
  framing framing_ = framing::none;
  bool head_ = false;
  bool skip_body_ = false;  // HEAD, 204, 304: the header says what a body would be; none follows
  bool keep_alive_ = false;
  bool failed_ = false;  // a write failed; the connection closes after the exchange
  bool reset_ = false;
  bool expects_continue_ = false;
  bool continue_sent_ = false;
  error_code last_error_;
  std::uint64_t remaining_ = 0;  // body bytes still owed under Content-Length
  std::uint64_t bytes_sent_ = 0;
  unsigned status_ = 0;
  cache_outcome outcome_ = cache_outcome::none;
  std::string route_label_;
  std::string pending_;  // bytes to send before the next body bytes
  steady::time_point start_;
  std::vector<std::byte> copy_buf_;
  std::vector<metric_cell> request_cells_;
  std::vector<metric_cell> byte_cells_;
  std::vector<metric_cell> outcome_cells_;
};

class server_impl final : public server {
 public:
  server_impl(const server_options& opt, std::shared_ptr<metrics_registry> metrics);
  ~server_impl() override;

  result<void> listen();
  // Serves on `fd`, a listening socket made by another process (create_on_socket).
  result<void> adopt_main(int fd);
  // The accept loop of the main port, once acceptor_ listens.
  result<void> start_accepting();

  void route(std::string prefix, handler h) override;
  std::uint16_t port() const noexcept override { return port_; }
  asio::any_io_executor executor() noexcept override { return ioc_.get_executor(); }
  void run() override;
  void stop() noexcept override;
  // proxy/handover.h
  int listen_fd() const noexcept { return listen_fd_; }
  void drain() noexcept;
  void set_inherited(int fd) noexcept { inherited_fd_ = fd; }
  result<std::unique_ptr<listener>> adopt_listener(int fd, listener_options opt) override;

  // From listener::close(), with the listener's mutex held: resets its connections soon (on the
  // accept strand). Does not block.
  void close_listener(std::shared_ptr<adopted_state> state) noexcept;

  const server_options& options() const noexcept { return opt_; }
  metrics_registry& metrics() noexcept { return *metrics_; }
  // Null while the access log is off.
  spdlog::logger* access_log() const noexcept {
    return access_log_on_.load() ? access_log_.get() : nullptr;
  }
  void set_access_log(bool on) noexcept override { access_log_on_.store(on); }
  std::atomic<std::int64_t>& in_flight() noexcept { return *in_flight_; }
  bool stopping() const noexcept { return stopping_.load(std::memory_order_relaxed); }
  // Stopping by drain(): connections waiting for a request wait until drain_deadline().
  bool draining() const noexcept { return draining_.load(); }
  steady::time_point drain_deadline() const noexcept {
    return steady::time_point(steady::duration(drain_deadline_.load()));
  }

  // The route with the longest prefix of `path`, or null. "/" is the front page's alone (see
  // server::route).
  const route_entry* match(std::string_view path) const noexcept {
    for (const auto& r : routes_) {
      if (r.prefix == "/" ? path == "/" : path.starts_with(r.prefix)) return &r;
    }
    return nullptr;
  }

  // Called by a connection's destructor.
  void forget(std::list<std::weak_ptr<connection>>::iterator it);

 private:
  // Accepts on the main port (`adopted` null) or on an adopted listener, until it is closed.
  asio::awaitable<void> accept_loop(std::shared_ptr<adopted_acceptor> adopted);
  void start_connection(socket_t socket, std::shared_ptr<adopted_state> listener);
  // On the accept strand.
  void close_acceptor(adopted_acceptor& adopted);
  void reset_listener(const std::shared_ptr<adopted_state>& state);
  std::vector<std::shared_ptr<adopted_acceptor>> adopted_acceptors();
  void begin_shutdown();
  void force_close();
  void maybe_finish_locked();
  // The context of the next connection.
  asio::io_context& next_context();
  // Stops every I/O context: run() returns.
  void stop_contexts() noexcept;
  std::vector<std::shared_ptr<connection>> live_connections();

  server_options opt_;
  std::shared_ptr<metrics_registry> metrics_;
  std::shared_ptr<spdlog::logger> access_log_;  // set once, in the constructor
  std::atomic<bool> access_log_on_{false};
  std::vector<route_entry> routes_;  // longest prefix first
  std::shared_ptr<std::atomic<std::int64_t>> in_flight_;

  // Declared before ioc_ so that they outlive it: destroying ioc_ destroys the coroutine frames
  // still suspended on it, and with them connections that unregister here.
  std::mutex conns_mutex_;
  std::list<std::weak_ptr<connection>> conns_;  // guarded by conns_mutex_
  int accept_loops_ = 0;                        // guarded by conns_mutex_; still running
  bool destroying_ = false;                     // guarded by conns_mutex_
  std::atomic<bool> stopping_{false};
  std::atomic<bool> draining_{false};  // set before stopping_
  std::atomic<steady::rep> drain_deadline_{0};
  int listen_fd_ = -1;     // acceptor_'s descriptor
  int inherited_fd_ = -1;  // create_on_socket's: listen() serves on it

  // One io_context per I/O thread, each run by its thread alone: a connection lives on one of
  // them, so its handlers never hop between threads (a shared context with N threads hands a
  // single connection's handlers from thread to thread, a context switch each). ioc_ is thread
  // 0's and also runs the acceptor and what executor() hands out; more_ are the others.
  asio::io_context ioc_;
  std::vector<std::unique_ptr<asio::io_context>> more_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> keep_running_;
  unsigned next_context_ = 0;  // on accept_strand_: round robin over ioc_ and more_
  // Declared after the contexts: I/O objects must go before their context.
  asio::strand<asio::io_context::executor_type> accept_strand_;
  acceptor_t acceptor_;
  // Guarded by conns_mutex_. A listener's record goes when its handle closes it (or with the
  // server); its acceptor is closed before that when the server stops.
  std::list<std::shared_ptr<adopted_acceptor>> adopted_;
  asio::steady_timer grace_timer_;
  std::uint16_t port_ = 0;
};

// connection

connection::connection(server_impl& srv, socket_t socket, std::string peer,
                       std::shared_ptr<adopted_state> listener)
    : srv_(srv),
      opt_(srv.options()),
      socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      peer_(std::move(peer)),
      listener_(std::move(listener)) {}

connection::~connection() {
  srv_.forget(registration);
}

void connection::start_wait(std::chrono::milliseconds timeout, bool idle) {
  deadline_ = steady::now() + timeout;
  waiting_ = true;
  idle_wait_ = idle;
  // The watchdog sleeps until armed_; wake it only when this deadline comes sooner.
  if (deadline_ < armed_) timer_.cancel();
}

// Not a coroutine on purpose: clang 14 (-O1, the `clang` preset) miscompiled the former
// `while (!closed_) { ...; co_await timer_.async_wait(); }` coroutine: its resume function had
// no back edge to the loop, so the watchdog ran to its end at its first wake-up and no deadline
// after that was enforced (gcc 12 compiled it correctly). A completion handler that re-arms the
// timer has no loop around a suspension point for the compiler to get wrong.
void connection::watchdog(std::shared_ptr<connection> self) {
  connection& c = *self;
  if (c.closed_) return;
  auto now = steady::now();
  if (c.waiting_ && c.deadline_ <= now) {
    if (c.idle_wait_ && c.buffer_.size() > 0) {
      // A request began to arrive while the connection was idle: it gets header_timeout.
      c.idle_wait_ = false;
      c.deadline_ = now + c.opt_.header_timeout;
    } else {
      c.timed_out_ = true;
      c.close_socket();
      return;
    }
  }
  // Outside a network wait (a handler busy elsewhere) it only polls for the next one.
  auto poll =
      std::max(std::chrono::milliseconds(1),
               std::min({c.opt_.header_timeout, c.opt_.idle_timeout, c.opt_.write_timeout}));
  c.armed_ = c.waiting_ ? c.deadline_ : now + poll;
  c.timer_.expires_at(c.armed_);
  // Woken early (operation_aborted) by start_wait() or finish(): the next round looks again.
  c.timer_.async_wait([self = std::move(self)](error_code) mutable { watchdog(std::move(self)); });
}

asio::awaitable<void> connection::run(std::shared_ptr<connection> self) {
  co_await self->serve();
  self->finish();
}

void connection::finish() {
  if (!reset_) {
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    socket_.close(ec);
  }
  closed_ = true;
  timer_.cancel();
}

void connection::on_stop() {
  if (phase_ != phase::reading_header) return;
  if (!srv_.draining()) {
    close_socket();
    return;
  }
  // The request may be on its way: wait for it until the drain deadline (serve() answers it with
  // Connection: close).
  if (waiting_ && srv_.drain_deadline() < deadline_) {
    deadline_ = srv_.drain_deadline();
    timer_.cancel();
  }
}

asio::awaitable<void> connection::serve() {
  bool first = true;
  while (socket_.is_open()) {
    // A server that drains for a hand-over answers one more request on each connection (that
    // answer says Connection: close), one that stops answers none.
    if (srv_.stopping() && !srv_.draining()) break;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(opt_.header_limit, std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(boost::none);
    phase_ = phase::reading_header;
    bool idle = !first && buffer_.size() == 0;
    auto wait = idle ? opt_.idle_timeout : opt_.header_timeout;
    if (srv_.stopping()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(srv_.drain_deadline() -
                                                                        steady::now());
      wait = std::max(std::chrono::milliseconds(1), std::min(left, wait));
    }
    start_wait(wait, idle);
    auto [ec, n] = co_await http::async_read_header(socket_, buffer_, *parser_);
    end_wait();
    phase_ = phase::busy;
    if (ec) {
      if (ec == http::error::header_limit) {
        std::string body = "request header too large: the limit is ";
        append_number(body, opt_.header_limit);
        body += " bytes\n";
        co_await reject(http::status::request_header_fields_too_large, std::move(body));
      } else if (is_malformed(ec)) {
        co_await reject(http::status::bad_request, "malformed request: " + ec.message() + "\n");
      }
      co_return;
    }
    first = false;
    co_await serve_exchange();
    if (!keep_alive_ || reset_ || failed_ || !socket_.is_open()) co_return;
    if (!parser_->is_done()) {
      // The handler left (a small part of) the body unread: drop it to keep the connection.
      std::vector<std::byte> scratch(16 * 1024);
      std::uint64_t total = 0;
      for (;;) {
        auto r = co_await read_body(scratch);
        if (!r || total > kDrainLimit) co_return;
        if (*r == 0) break;
        total += *r;
      }
    }
  }
}

void connection::start_exchange(bool parsed) {
  state_ = state::none;
  framing_ = framing::none;
  head_ = parsed && parser_->get().method() == http::verb::head;
  skip_body_ = false;
  keep_alive_ = parsed && parser_->keep_alive();
  failed_ = false;
  last_error_ = {};
  remaining_ = 0;
  bytes_sent_ = 0;
  status_ = 0;
  outcome_ = cache_outcome::none;
  route_label_.clear();
  pending_.clear();
  continue_sent_ = false;
  expects_continue_ = false;
  if (parsed && parser_->get().version() >= 11 && !parser_->is_done()) {
    for (auto v : header_values(http::field::expect)) {
      if (beast::iequals(v, "100-continue")) expects_continue_ = true;
    }
  }
  start_ = steady::now();
}

asio::awaitable<void> connection::serve_exchange() {
  start_exchange(true);
  srv_.in_flight().fetch_add(1, std::memory_order_relaxed);
  std::string_view target = parser_->get().target();
  std::string_view path = target.substr(0, target.find('?'));
  if (!admitted(path)) {
    route_label_ = kRefusedRoute;
    auto res = refusal(path);
    co_await respond(std::move(res));
  } else if (const route_entry* r = srv_.match(path)) {
    route_label_ = r->prefix;
    try {
      co_await r->h(*this);
    } catch (const std::exception& e) {
      spdlog::error("proxy: bug: the handler of {} threw on {} {} from {}: {}; connection reset",
                    r->prefix, std::string_view(parser_->get().method_string()), target, peer_,
                    e.what());
      reset();
    } catch (...) {
      spdlog::error(
          "proxy: bug: the handler of {} threw a non-exception on {} {} from {}; connection reset",
          r->prefix, std::string_view(parser_->get().method_string()), target, peer_);
      reset();
    }
    if (!reset_ && state_ == state::none) {
      spdlog::error("proxy: bug: the handler of {} sent no response to {} {} from {}", r->prefix,
                    std::string_view(parser_->get().method_string()), target, peer_);
      http::response<http::string_body> res{http::status::internal_server_error, 11};
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "internal error: the handler of " + r->prefix + " sent no response\n";
      co_await respond(std::move(res));
    } else if (!reset_ && state_ == state::begun && !failed_) {
      spdlog::error(
          "proxy: bug: the handler of {} left its response to {} {} from {} unfinished after {} "
          "body bytes; connection reset",
          r->prefix, std::string_view(parser_->get().method_string()), target, peer_, bytes_sent_);
      reset();
    }
  } else {
    route_label_ = kUnmatchedRoute;
    http::response<http::string_body> res{http::status::not_found, 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "not found: no route for path ";
    append_field_text(res.body(), path);
    res.body() += '\n';
    co_await respond(std::move(res));
  }
  srv_.in_flight().fetch_sub(1, std::memory_order_relaxed);
  end_exchange(parser_->get().method_string(), target);
}

bool connection::admitted(std::string_view path) const {
  if (!listener_ || !listener_->allow) return true;
  try {
    return listener_->allow(parser_->get().method(), path);
  } catch (const std::exception& e) {
    spdlog::error("proxy: bug: the route filter of listener {} threw on {} {}: {}; refused",
                  listener_->name, std::string_view(parser_->get().method_string()), path,
                  e.what());
  } catch (...) {
    spdlog::error("proxy: bug: the route filter of listener {} threw on {} {}; refused",
                  listener_->name, std::string_view(parser_->get().method_string()), path);
  }
  return false;
}

http::response<http::string_body> connection::refusal(std::string_view path) const {
  http::response<http::string_body> res{http::status::forbidden, 11};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  std::string& body = res.body();
  body = "forbidden: ";
  append_field_text(body, parser_->get().method_string());
  body += ' ';
  append_field_text(body, path);
  body += ": this listener";
  if (!listener_->name.empty()) {
    body += " (";
    append_field_text(body, listener_->name);
    body += ')';
  }
  body += " serves only some routes\n";
  return res;
}

std::atomic<std::uint64_t>& connection::cell(std::vector<metric_cell>& cells,
                                             const std::string& name, const std::string& help,
                                             std::string_view label_name, unsigned key,
                                             std::string_view label_value) {
  for (auto& c : cells) {
    if (c.key == key && c.route == route_label_) return *c.cell;
  }
  if (cells.size() >= kMaxCachedCells) cells.clear();
  auto& ref = srv_.metrics().counter_ref(
      name, {{"route", route_label_}, {std::string(label_name), std::string(label_value)}}, help);
  cells.push_back({route_label_, key, &ref});
  return ref;
}

void connection::end_exchange(std::string_view method, std::string_view target) {
  if (spdlog::logger* log = srv_.access_log()) {
    double ms = std::chrono::duration<double, std::milli>(steady::now() - start_).count();
    log->info("{} {} {} {} {} {:.3f} {}", peer_, method, target, status_, bytes_sent_, ms,
              to_string(outcome_));
  }
  // status 0: reset before any header was sent.
  std::string status_label = status_ ? std::to_string(status_) : std::string("reset");
  cell(request_cells_, kRequestsTotal, kRequestsHelp, "status", status_, status_label)
      .fetch_add(1, std::memory_order_relaxed);
  if (bytes_sent_ > 0) {
    cell(byte_cells_, kBytesTotal, kBytesHelp, "outcome", static_cast<unsigned>(outcome_),
         outcome_label(outcome_))
        .fetch_add(bytes_sent_, std::memory_order_relaxed);
  }
  if (outcome_ != cache_outcome::none) {
    cell(outcome_cells_, kOutcomesTotal, kOutcomesHelp, "outcome", static_cast<unsigned>(outcome_),
         outcome_label(outcome_))
        .fetch_add(1, std::memory_order_relaxed);
  }
  if (traffic_tally* t = traffic()) t->add(route_label_, outcome_, bytes_sent_);
  // Only a connection busy with large bodies for slow clients keeps its copy buffer.
  if (!copy_buf_.empty()) std::vector<std::byte>().swap(copy_buf_);
}

asio::awaitable<void> connection::reject(http::status status, std::string body) {
  start_exchange(false);
  route_label_ = kMalformedRoute;
  http::response_header<> h;
  h.result(status);
  h.version(11);
  h.set(http::field::content_type, "text/plain; charset=utf-8");
  h.set(http::field::content_length, std::to_string(body.size()));
  h.set(http::field::connection, "close");
  serialize_header(pending_, h);
  status_ = static_cast<unsigned>(status);
  out_buffers bufs;
  bufs.add(pending_);
  bufs.add(body);
  std::size_t written = 0;
  error_code ec = co_await write_all(bufs, written);
  bytes_sent_ = written > pending_.size() ? written - pending_.size() : 0;
  pending_.clear();
  end_exchange("-", "-");
  if (!ec) co_await linger_close();
}

asio::awaitable<void> connection::linger_close() {
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  buffer_.clear();
  start_wait(std::min(opt_.header_timeout, kLingerTime));
  std::size_t total = 0;
  while (total < kLingerBytes) {
    auto [rec, n] = co_await socket_.async_read_some(buffer_.prepare(16 * 1024));
    if (rec) break;
    total += n;
  }
  end_wait();
}

std::vector<std::string_view> connection::header_values(http::field name) const {
  std::vector<std::string_view> out;
  auto [first, last] = parser_->get().equal_range(name);
  for (auto it = first; it != last; ++it)
    out.emplace_back(it->value());
  return out;
}

asio::awaitable<result<std::size_t>> connection::read_body(std::span<std::byte> out) {
  if (parser_->is_done()) co_return std::size_t{0};
  if (out.empty()) {
    co_return error(errc::invalid_argument, "proxy: read_body called with an empty buffer");
  }
  if (expects_continue_ && !continue_sent_ && state_ == state::none) {
    continue_sent_ = true;
    static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
    out_buffers bufs;
    bufs.add(k100);
    std::size_t written = 0;
    if (error_code ec = co_await write_all(bufs, written)) {
      co_return error(ec, "proxy: sending 100 Continue to " + peer_ + " failed: " + ec.message());
    }
  }
  // Beast reads no more than the buffer's spare capacity per call, and an idle connection's
  // buffer holds 512 bytes; a body (an image layer upload) is read 64 KiB at a time instead.
  if (buffer_.capacity() < kBodyReadChunk) buffer_.reserve(kBodyReadChunk);
  auto& body = parser_->get().body();
  for (;;) {
    body.data = out.data();
    body.size = out.size();
    body.more = true;
    // A client that sends no body byte for idle_timeout is as gone as an idle one.
    start_wait(opt_.idle_timeout);
    auto [ec, n] = co_await http::async_read_some(socket_, buffer_, *parser_);
    end_wait();
    if (ec == http::error::need_buffer) ec = {};
    std::size_t got = out.size() - body.size;
    body.data = nullptr;
    if (ec) {
      keep_alive_ = false;
      failed_ = true;
      // No conditional expressions with temporaries here: gcc 12 miscompiles them in coroutines.
      error_code code = ec;
      std::string what = ec.message();
      if (timed_out_) {
        code = asio::error::timed_out;
        what = "no data for " + std::to_string(opt_.idle_timeout.count()) + " ms";
      }
      co_return error(code, "proxy: reading the request body of " +
                                std::string(parser_->get().target()) + " from " + peer_ +
                                " failed: " + what);
    }
    if (got > 0 || parser_->is_done()) co_return got;
  }
}

bool connection::body_drainable() const {
  if (parser_->is_done()) return true;
  if (expects_continue_ && !continue_sent_) return false;
  if (parser_->chunked()) return false;
  auto left = parser_->content_length_remaining();
  return left && *left <= kDrainLimit;
}

void connection::finish_header(http::response_header<>& h) {
  keep_alive_ = keep_alive_ && !srv_.stopping() && body_drainable();
  bool http10 = parser_->get().version() < 11;
  h.version(http10 ? 10 : 11);
  // Connection is hop-by-hop: ours to decide, whatever a handler copied from upstream.
  h.erase(http::field::connection);
  if (http10 && keep_alive_) {
    h.set(http::field::connection, "keep-alive");
  } else if (!http10 && !keep_alive_) {
    h.set(http::field::connection, "close");
  }
  if (outcome_ != cache_outcome::none) h.set(kCacheHeader, outcome_label(outcome_));
}

error_code connection::fail(error_code ec) {
  failed_ = true;
  keep_alive_ = false;
  last_error_ = ec;
  return ec;
}

error_code connection::misuse(std::string_view what) {
  spdlog::error("proxy: bug: the handler of {} {} on {} {} from {}", route_label_, what,
                std::string_view(parser_->get().method_string()),
                std::string_view(parser_->get().target()), peer_);
  return make_error_code(errc::invalid_argument);
}

asio::awaitable<error_code> connection::write_all(out_buffers& bufs, std::size_t& written) {
  if (failed_) co_return last_error_;
  if (reset_ || !socket_.is_open()) co_return fail(asio::error::not_connected);
  std::size_t first = 0;
  auto consume = [&](std::size_t k) {
    written += k;
    while (k > 0 && first < bufs.n) {
      std::size_t s = bufs.b[first].size();
      if (k >= s) {
        k -= s;
        ++first;
      } else {
        bufs.b[first] += k;
        k = 0;
      }
    }
  };
  auto rest = [&] {
    return std::span<const asio::const_buffer>(bufs.b.data() + first, bufs.n - first);
  };
  if (bufs.n == 0) co_return error_code{};
  // Most responses fit the socket buffer: one non-blocking gather write, no suspension.
  error_code ec;
  std::size_t k = socket_.write_some(rest(), ec);
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) co_return fail(ec);
  consume(k);
  while (first < bufs.n) {
    start_wait(opt_.write_timeout);
    auto [wec, wn] = co_await socket_.async_write_some(rest());
    end_wait();
    if (wec) co_return fail(timed_out_ ? error_code(asio::error::timed_out) : wec);
    consume(wn);
  }
  co_return error_code{};
}

asio::awaitable<error_code> connection::write_body(std::span<const std::byte> body, bool chunk) {
  char chunk_line[24];
  std::size_t chunk_len = 0;
  out_buffers bufs;
  bufs.add(pending_);
  if (chunk && !body.empty()) {
    auto [end, ec] = std::to_chars(chunk_line, chunk_line + 16, body.size(), 16);
    (void)ec;
    end[0] = '\r';
    end[1] = '\n';
    chunk_len = static_cast<std::size_t>(end + 2 - chunk_line);
    bufs.add(asio::const_buffer(chunk_line, chunk_len));
  }
  bufs.add(asio::const_buffer(body.data(), body.size()));
  if (chunk && !body.empty()) bufs.add(std::string_view("\r\n"));
  std::size_t written = 0;
  std::size_t before = pending_.size() + chunk_len;
  error_code ec = co_await write_all(bufs, written);
  std::size_t body_written =
      written > before ? std::min(written - before, body.size()) : std::size_t{0};
  bytes_sent_ += body_written;
  if (framing_ == framing::length) remaining_ -= body_written;
  if (!ec) pending_.clear();
  co_return ec;
}

asio::awaitable<error_code> connection::respond(http::response<http::string_body> res) {
  if (state_ != state::none) co_return misuse("called respond() on an exchange already answered");
  unsigned status = res.result_int();
  const std::string& body = res.body();
  if (!allows_body(status)) {
    res.erase(http::field::transfer_encoding);
    if (status != 304) res.erase(http::field::content_length);
  } else if (!(head_ && res.has_content_length())) {
    res.content_length(body.size());
  }
  finish_header(res.base());
  serialize_header(pending_, res.base());
  state_ = state::done;
  status_ = status;
  std::span<const std::byte> bytes;
  if (!head_ && allows_body(status)) bytes = std::as_bytes(std::span(body.data(), body.size()));
  co_return co_await write_body(bytes, false);
}

asio::awaitable<error_code> connection::begin(http::response_header<> header,
                                              std::optional<std::uint64_t> length) {
  if (state_ != state::none) co_return misuse("called begin() on an exchange already answered");
  unsigned status = header.result_int();
  header.erase(http::field::transfer_encoding);
  if (!allows_body(status)) {
    framing_ = framing::none;
    skip_body_ = true;
    if (length && status == 304) {
      header.set(http::field::content_length, std::to_string(*length));
    } else {
      header.erase(http::field::content_length);
    }
  } else if (length) {
    framing_ = framing::length;
    remaining_ = *length;
    header.set(http::field::content_length, std::to_string(*length));
  } else if (parser_->get().version() >= 11) {
    framing_ = framing::chunked;
    header.erase(http::field::content_length);
    header.set(http::field::transfer_encoding, "chunked");
  } else {
    // An HTTP/1.0 client knows no chunks: the body ends when the connection does.
    framing_ = framing::until_close;
    header.erase(http::field::content_length);
    keep_alive_ = false;
  }
  if (head_) skip_body_ = true;
  finish_header(header);
  // Held back and sent with the first body bytes: one write instead of two.
  serialize_header(pending_, header);
  state_ = state::begun;
  status_ = status;
  co_return error_code{};
}

asio::awaitable<error_code> connection::write(std::span<const std::byte> bytes) {
  if (state_ != state::begun) co_return misuse("called write() outside begin() and end()");
  if (failed_) co_return last_error_;
  if (bytes.empty() || skip_body_) {
    if (pending_.empty()) co_return error_code{};
    co_return co_await write_body({}, false);
  }
  if (framing_ == framing::length && bytes.size() > remaining_) {
    misuse("wrote more body bytes than its Content-Length");
    co_return make_error_code(errc::size_mismatch);
  }
  co_return co_await write_body(bytes, framing_ == framing::chunked);
}

asio::awaitable<error_code> connection::write_blob(cache::blob_reader& blob, std::uint64_t offset,
                                                   std::uint64_t length) {
  if (state_ != state::begun) co_return misuse("called write_blob() outside begin() and end()");
  if (failed_) co_return last_error_;
  if (skip_body_ || length == 0) co_return error_code{};
  if (framing_ == framing::length && length > remaining_) {
    misuse("wrote more body bytes than its Content-Length");
    co_return make_error_code(errc::size_mismatch);
  }
  if (offset > blob.size() || length > blob.size() - offset) {
    co_return misuse("asked write_blob() for a range outside the blob");
  }
  bool chunked = framing_ == framing::chunked;
  if (chunked) {
    append_number(pending_, length, 16);
    pending_ += "\r\n";
  }
  std::uint64_t pos = offset;
  const std::uint64_t end = offset + length;
  while (pos < end) {
    // Straight from the map while the socket takes bytes without blocking; a held-back header
    // goes in the same gather write. visit() returns as soon as the socket would block, so its
    // read transaction ends before any wait.
    error_code wec;
    std::size_t prefix_sent = 0;
    auto sent = blob.visit(pos, end - pos, [&](std::span<const std::byte> piece) -> std::size_t {
      asio::const_buffer bytes(piece.data(), piece.size());
      if (prefix_sent == pending_.size()) {
        std::size_t n = socket_.write_some(bytes, wec);
        return wec ? 0 : n;
      }
      std::array<asio::const_buffer, 2> bufs{
          asio::const_buffer(pending_.data() + prefix_sent, pending_.size() - prefix_sent), bytes};
      std::size_t n = socket_.write_some(bufs, wec);
      if (wec) return 0;
      std::size_t p = std::min(n, pending_.size() - prefix_sent);
      prefix_sent += p;
      return n - p;
    });
    pending_.erase(0, prefix_sent);
    if (!sent) {
      spdlog::warn("proxy: serving {} to {} failed at byte {}: {}", blob.info().id.short_str(),
                   peer_, pos, sent.error().message);
      co_return fail(sent.error().code);
    }
    pos += *sent;
    bytes_sent_ += *sent;
    if (framing_ == framing::length) remaining_ -= *sent;
    if (wec && wec != asio::error::would_block && wec != asio::error::try_again) {
      co_return fail(wec);
    }
    if (pos == end) break;
    // The socket is full: copy the next piece out of the map (the transaction ends with the
    // copy), then wait for the socket with it and what is left of the header.
    if (copy_buf_.empty()) copy_buf_.resize(kCopyPiece);
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kCopyPiece, end - pos));
    auto got = blob.read(pos, std::span(copy_buf_.data(), want));
    if (!got || *got == 0) {
      error_code code = make_error_code(errc::corrupt);
      std::string why = "the blob ended early";
      if (!got) {
        code = got.error().code;
        why = got.error().message;
      }
      spdlog::warn("proxy: serving {} to {} failed at byte {}: {}", blob.info().id.short_str(),
                   peer_, pos, why);
      co_return fail(code);
    }
    if (error_code ec = co_await write_body(std::span(copy_buf_.data(), *got), false)) co_return ec;
    pos += *got;
  }
  if (chunked) pending_ += "\r\n";
  co_return error_code{};
}

asio::awaitable<error_code> connection::end() {
  if (state_ != state::begun) co_return misuse("called end() without begin()");
  if (failed_) co_return last_error_;
  if (framing_ == framing::length && remaining_ > 0 && !skip_body_) {
    spdlog::error(
        "proxy: bug: the handler of {} ended its response to {} {} from {} {} bytes short of its "
        "Content-Length; connection reset",
        route_label_, std::string_view(parser_->get().method_string()),
        std::string_view(parser_->get().target()), peer_, remaining_);
    reset();
    co_return make_error_code(errc::size_mismatch);
  }
  if (framing_ == framing::chunked && !skip_body_) pending_ += "0\r\n\r\n";
  state_ = state::done;
  if (pending_.empty()) co_return error_code{};
  co_return co_await write_body({}, false);
}

void connection::reset() noexcept {
  reset_ = true;
  keep_alive_ = false;
  error_code ec;
  socket_.set_option(asio::socket_base::linger(true, 0), ec);
  socket_.close(ec);
}

// The family and port of `fd` if it is a listening TCP socket; errc::invalid_argument saying
// what it is not otherwise.
result<std::pair<tcp, std::uint16_t>> listening_family(int fd) {
  auto invalid = [](std::string why) { return error(errc::invalid_argument, std::move(why)); };
  auto sys_invalid = [&](std::string_view call) {
    return invalid(std::string(call) + ": " + std::strerror(errno));
  };
  if (fd < 0) return invalid("not a descriptor");
  auto int_option = [fd](int name, int& value) {
    socklen_t len = sizeof value;
    return ::getsockopt(fd, SOL_SOCKET, name, &value, &len) == 0;
  };
  int type = 0;
  int accepting = 0;
  int protocol = 0;
  if (!int_option(SO_TYPE, type)) return sys_invalid("getsockopt SO_TYPE");
  if (type != SOCK_STREAM)
    return invalid("not a stream socket (SO_TYPE " + std::to_string(type) + ")");
  if (!int_option(SO_PROTOCOL, protocol)) return sys_invalid("getsockopt SO_PROTOCOL");
  if (protocol != IPPROTO_TCP) return invalid("not a TCP socket");
  if (!int_option(SO_ACCEPTCONN, accepting)) return sys_invalid("getsockopt SO_ACCEPTCONN");
  if (!accepting) return invalid("the socket is not listening");
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return sys_invalid("getsockname");
  }
  if (addr.ss_family == AF_INET) {
    return std::pair{tcp::v4(), ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port)};
  }
  if (addr.ss_family == AF_INET6) {
    return std::pair{tcp::v6(), ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port)};
  }
  return invalid("neither an IPv4 nor an IPv6 socket");
}

// server_impl

server_impl::server_impl(const server_options& opt, std::shared_ptr<metrics_registry> metrics)
    : opt_(opt),
      metrics_(metrics ? std::move(metrics) : std::make_shared<metrics_registry>()),
      in_flight_(std::make_shared<std::atomic<std::int64_t>>(0)),
      ioc_(1),
      accept_strand_(asio::make_strand(ioc_)),
      acceptor_(accept_strand_),
      grace_timer_(accept_strand_) {
  const unsigned threads =
      opt_.threads ? opt_.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 1; i < threads; ++i) {
    more_.push_back(std::make_unique<asio::io_context>(1));
    keep_running_.push_back(asio::make_work_guard(*more_.back()));
  }
  // Made whether or not it is on, so that set_access_log() only flips a flag. Unregistered, so
  // spdlog::set_level() (server.log_level) does not reach it; unnamed, so its lines read as the
  // default logger's.
  access_log_ = spdlog::get("access");
  if (!access_log_) {
    access_log_ = spdlog::default_logger()->clone("");
    access_log_->set_level(spdlog::level::info);
  }
  access_log_on_.store(opt_.access_log);
  metrics_->gauge_fn("pantry_http_requests_in_flight", "HTTP requests being served",
                     [n = in_flight_] { return static_cast<double>(n->load()); });
  route("/healthz", [](exchange& ex) -> asio::awaitable<void> {
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "ok";
    co_await ex.respond(std::move(res));
  });
  route("/metrics", [m = metrics_](exchange& ex) -> asio::awaitable<void> {
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain; version=0.0.4");
    res.body() = m->render();
    co_await ex.respond(std::move(res));
  });
}

server_impl::~server_impl() {
  std::list<std::shared_ptr<adopted_acceptor>> adopted;
  {
    std::lock_guard lock(conns_mutex_);
    destroying_ = true;
    adopted = adopted_;
  }
  // A handle that outlives the server finds its listener closed and no server to call. No I/O
  // thread runs any more, so the acceptors can be closed from here.
  for (auto& a : adopted) {
    {
      std::lock_guard lock(a->state->mutex);
      a->state->srv = nullptr;
      a->state->fd_open = false;
      a->state->closed = true;
    }
    error_code ec;
    a->acceptor.close(ec);
  }
  // The handlers hold the services, and they the upstream client with its pooled sockets on
  // these contexts: let them go while the contexts still exist.
  routes_.clear();
}

result<void> server_impl::listen() {
  error_code ec;
  if (inherited_fd_ >= 0) return adopt_main(std::exchange(inherited_fd_, -1));
  tcp::endpoint ep;
  auto addr = asio::ip::make_address(opt_.host, ec);
  if (!ec) {
    ep = tcp::endpoint(addr, opt_.port);
  } else {
    tcp::resolver resolver(ioc_);
    auto found = resolver.resolve(opt_.host, std::to_string(opt_.port), ec);
    if (ec || found.empty()) {
      return error(errc::invalid_argument, "proxy: cannot listen on \"" + opt_.host +
                                               "\": " + (ec ? ec.message() : "no address"));
    }
    ep = *found.begin();
  }
  auto failed = [&](std::string_view step) {
    return error(ec, "proxy: cannot listen on " + opt_.host + ":" + std::to_string(opt_.port) +
                         ": " + std::string(step) + ": " + ec.message());
  };
  acceptor_.open(ep.protocol(), ec);
  if (ec) return failed("socket");
  acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return failed("SO_REUSEADDR");
  acceptor_.bind(ep, ec);
  if (ec) return failed("bind");
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return failed("listen");
  return start_accepting();
}

result<void> server_impl::adopt_main(int fd) {
  const std::string what =
      "proxy: the inherited listening socket (descriptor " + std::to_string(fd) + ")";
  auto family = listening_family(fd);
  if (!family) {
    ::close(fd);
    return error(errc::invalid_argument, what + ": " + family.error().message);
  }
  error_code ec;
  acceptor_.assign(family->first, fd, ec);
  if (ec) {
    ::close(fd);
    return error(ec, what + ": " + ec.message());
  }
  return start_accepting();
}

result<void> server_impl::start_accepting() {
  error_code ec;
  listen_fd_ = acceptor_.native_handle();
  port_ = acceptor_.local_endpoint(ec).port();
  {
    std::lock_guard lock(conns_mutex_);
    ++accept_loops_;
  }
  asio::co_spawn(accept_strand_, accept_loop(nullptr), spawn_done{});
  return {};
}

void server_impl::route(std::string prefix, handler h) {
  auto it = std::find_if(routes_.begin(), routes_.end(),
                         [&](const route_entry& r) { return r.prefix == prefix; });
  if (it != routes_.end()) {
    it->h = std::move(h);
    return;
  }
  routes_.push_back({std::move(prefix), std::move(h)});
  std::stable_sort(routes_.begin(), routes_.end(), [](const route_entry& a, const route_entry& b) {
    return a.prefix.size() > b.prefix.size();
  });
}

asio::awaitable<void> server_impl::accept_loop(std::shared_ptr<adopted_acceptor> adopted) {
  acceptor_t& acceptor = adopted ? adopted->acceptor : acceptor_;
  std::shared_ptr<adopted_state> listener;
  std::string where = "port " + std::to_string(port_);
  if (adopted) {
    listener = adopted->state;
    where = "listener " + listener->name + " (port " + std::to_string(listener->port) + ")";
  }
  for (;;) {
    socket_t socket(asio::make_strand(next_context()));
    auto [ec] = co_await acceptor.async_accept(socket);
    if (stopping() || !acceptor.is_open() || (listener && listener->closed)) {
      // Accepted just as a hand-over began: its client gets its answer rather than a reset.
      if (!ec && !adopted && draining()) start_connection(std::move(socket), nullptr);
      break;
    }
    if (ec) {
      if (ec == asio::error::operation_aborted) break;
      if (ec == asio::error::connection_aborted) continue;
      // Out of descriptors or memory: back off instead of spinning on the ready listener.
      spdlog::warn("proxy: accept on {} failed: {}; retrying in 100 ms", where, ec.message());
      timer_t pause(accept_strand_);
      pause.expires_after(std::chrono::milliseconds(100));
      co_await pause.async_wait();
      continue;
    }
    start_connection(std::move(socket), listener);
  }
  if (adopted) close_acceptor(*adopted);
  std::lock_guard lock(conns_mutex_);
  --accept_loops_;
  maybe_finish_locked();
}

void server_impl::start_connection(socket_t socket, std::shared_ptr<adopted_state> listener) {
  error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return;  // already gone
  socket.set_option(tcp::no_delay(true), ec);
  socket.non_blocking(true, ec);
  if (ec) {
    spdlog::warn("proxy: cannot make the connection from {} non-blocking: {}", peer_string(ep),
                 ec.message());
    return;
  }
  auto c =
      std::make_shared<connection>(*this, std::move(socket), peer_string(ep), std::move(listener));
  {
    std::lock_guard lock(conns_mutex_);
    c->registration = conns_.insert(conns_.end(), c);
  }
  asio::co_spawn(c->executor(), connection::run(c), spawn_done{});
  asio::post(c->executor(), [c]() mutable { connection::watchdog(std::move(c)); });
}

void server_impl::forget(std::list<std::weak_ptr<connection>>::iterator it) {
  std::lock_guard lock(conns_mutex_);
  conns_.erase(it);
  maybe_finish_locked();
}

void server_impl::maybe_finish_locked() {
  if (stopping() && accept_loops_ == 0 && conns_.empty() && !destroying_) stop_contexts();
}

asio::io_context& server_impl::next_context() {
  unsigned i = next_context_++ % static_cast<unsigned>(more_.size() + 1);
  return i == 0 ? ioc_ : *more_[i - 1];
}

void server_impl::stop_contexts() noexcept {
  ioc_.stop();
  for (auto& c : more_)
    c->stop();
}

std::vector<std::shared_ptr<connection>> server_impl::live_connections() {
  std::vector<std::shared_ptr<connection>> out;
  std::lock_guard lock(conns_mutex_);
  out.reserve(conns_.size());
  for (auto& w : conns_) {
    if (auto c = w.lock()) out.push_back(std::move(c));
  }
  return out;
}

void server_impl::run() {
  auto loop = [](asio::io_context& ctx) {
    for (;;) {
      try {
        ctx.run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("proxy: bug: an exception escaped to an I/O thread: {}", e.what());
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(more_.size());
  for (auto& c : more_)
    threads.emplace_back([&loop, ctx = c.get()] { loop(*ctx); });
  loop(ioc_);
  for (auto& t : threads)
    t.join();
}

void server_impl::stop() noexcept {
  if (stopping_.exchange(true)) return;
  try {
    asio::post(accept_strand_, [this] { begin_shutdown(); });
  } catch (const std::exception& e) {
    spdlog::error("proxy: stop failed: {}; stopping at once", e.what());
    stop_contexts();
  }
}

void server_impl::drain() noexcept {
  drain_deadline_.store((steady::now() + kDrainIdle).time_since_epoch().count());
  draining_.store(true);
  stop();
}

void server_impl::begin_shutdown() {
  error_code ec;
  acceptor_.close(ec);
  for (auto& a : adopted_acceptors())
    close_acceptor(*a);
  for (auto& c : live_connections()) {
    asio::post(c->executor(), [c] { c->on_stop(); });
  }
  grace_timer_.expires_after(opt_.shutdown_grace);
  grace_timer_.async_wait([this](error_code ec) {
    if (!ec) force_close();
  });
}

void server_impl::force_close() {
  auto live = live_connections();
  if (!live.empty()) {
    spdlog::warn("proxy: {} connections still busy after the shutdown grace of {} ms; resetting",
                 live.size(), opt_.shutdown_grace.count());
  }
  for (auto& c : live) {
    asio::post(c->executor(), [c] { c->reset(); });
  }
  // A handler waiting on something other than its socket would keep run() going: give the
  // reset connections a moment to unwind, then stop the loop regardless.
  grace_timer_.expires_after(std::chrono::milliseconds(500));
  grace_timer_.async_wait([this](error_code ec) {
    if (!ec) stop_contexts();
  });
}

result<std::unique_ptr<listener>> server_impl::adopt_listener(int fd, listener_options opt) {
  // The call owns `fd`: every early return closes it.
  struct fd_guard {
    int fd;
    ~fd_guard() {
      if (fd >= 0) ::close(fd);
    }
  } guard{fd};
  std::string what = "proxy: cannot adopt descriptor " + std::to_string(fd) + " as a listener";
  if (!opt.name.empty()) what += " for " + opt.name;
  auto invalid = [&](std::string_view why) {
    return error(errc::invalid_argument, what + ": " + std::string(why));
  };
  auto found = listening_family(fd);
  if (!found) return invalid(found.error().message);
  const auto [family, port] = *found;
  auto state = std::make_shared<adopted_state>(std::move(opt), fd, port);
  auto adopted = std::make_shared<adopted_acceptor>(accept_strand_, state);
  error_code ec;
  adopted->acceptor.assign(family, fd, ec);
  if (ec) return invalid("assign: " + ec.message());
  guard.fd = -1;  // the acceptor owns it now, and closes it on the paths below
  {
    std::lock_guard lock(conns_mutex_);
    if (stopping()) return error(errc::cancelled, what + ": the server is stopping");
    state->srv = this;
    adopted_.push_back(adopted);
    ++accept_loops_;
  }
  asio::co_spawn(accept_strand_, accept_loop(adopted), spawn_done{});
  spdlog::debug("proxy: serving listener {} on port {}", state->name, port);
  return std::unique_ptr<listener>(std::make_unique<listener_handle>(std::move(state)));
}

void server_impl::close_listener(std::shared_ptr<adopted_state> state) noexcept {
  try {
    asio::post(accept_strand_, [this, state = std::move(state)] { reset_listener(state); });
  } catch (const std::exception& e) {
    spdlog::error("proxy: closing a listener failed: {}", e.what());
  }
}

void server_impl::close_acceptor(adopted_acceptor& adopted) {
  {
    std::lock_guard lock(adopted.state->mutex);
    adopted.state->fd_open = false;
  }
  error_code ec;
  adopted.acceptor.close(ec);
}

void server_impl::reset_listener(const std::shared_ptr<adopted_state>& state) {
  std::shared_ptr<adopted_acceptor> adopted;
  {
    std::lock_guard lock(conns_mutex_);
    auto it = std::find_if(adopted_.begin(), adopted_.end(),
                           [&](const auto& a) { return a->state == state; });
    if (it != adopted_.end()) {
      adopted = *it;
      adopted_.erase(it);
    }
  }
  // Its accept loop may already have closed it (woken by the shutdown in close()), or the server
  // stopping.
  if (adopted) close_acceptor(*adopted);
  std::size_t reset = 0;
  for (auto& c : live_connections()) {
    if (c->listener() != state.get()) continue;
    asio::post(c->executor(), [c] { c->reset(); });
    ++reset;
  }
  spdlog::debug("proxy: closed listener {} on port {}; {} connections reset", state->name,
                state->port, reset);
}

std::vector<std::shared_ptr<adopted_acceptor>> server_impl::adopted_acceptors() {
  std::lock_guard lock(conns_mutex_);
  return {adopted_.begin(), adopted_.end()};
}

void listener_handle::close() noexcept {
  adopted_state& s = *state_;
  std::lock_guard lock(s.mutex);
  if (s.closed.exchange(true)) return;
  // The socket stops listening at once (a connect is refused from now on) and its accept loop
  // wakes up; the descriptor itself is closed on the accept strand, where its acceptor lives.
  if (s.fd_open) ::shutdown(s.fd, SHUT_RDWR);
  if (s.srv) s.srv->close_listener(state_);
}

}  // namespace

result<std::unique_ptr<server>> server::create(const server_options& opt,
                                               std::shared_ptr<metrics_registry> metrics) {
  auto s = std::make_unique<server_impl>(opt, std::move(metrics));
  if (auto r = s->listen(); !r) return r.error();
  return std::unique_ptr<server>(std::move(s));
}

result<std::unique_ptr<server>> create_on_socket(const server_options& opt,
                                                 std::shared_ptr<metrics_registry> metrics,
                                                 int listen_fd) {
  auto s = std::make_unique<server_impl>(opt, std::move(metrics));
  s->set_inherited(listen_fd);
  if (auto r = s->listen(); !r) return r.error();
  return std::unique_ptr<server>(std::move(s));
}

int listening_socket(const server& srv) noexcept {
  auto* impl = dynamic_cast<const server_impl*>(&srv);
  return impl != nullptr ? impl->listen_fd() : -1;
}

void drain(server& srv) noexcept {
  if (auto* impl = dynamic_cast<server_impl*>(&srv)) {
    impl->drain();
  } else {
    srv.stop();
  }
}

}  // namespace pantry::proxy
