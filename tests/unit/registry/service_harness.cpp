#include "service_harness.h"

#include "pantry/cache/digest.h"
#include "pantry/text.h"

#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <random>
#include <set>
#include <sstream>

namespace pantry::registry::testing {

namespace {

using tcp = asio::ip::tcp;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

// A handler that runs longer than this is stuck: the test fails instead of hanging.
constexpr std::chrono::milliseconds kRequestLimit{10'000};
// Request heads larger than this are not pantry's (its upstream requests are a few hundred bytes).
constexpr std::size_t kMaxHead = 64 * 1024;

std::string_view text_of(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::string first_value(const header_lines& lines, std::string_view name) {
  for (const auto& [k, v] : lines) {
    if (ascii_iequals(k, name)) return v;
  }
  return {};
}

bool has_line(const header_lines& lines, std::string_view name) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const auto& kv) { return ascii_iequals(kv.first, name); });
}

// A request head: "GET /x HTTP/1.1\r\nName: value\r\n…\r\n\r\n".
upstream_request parse_head(std::string_view head) {
  upstream_request r;
  auto line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  auto sp1 = line.find(' ');
  auto sp2 = line.find(' ', sp1 + 1);
  r.method = std::string(line.substr(0, sp1));
  r.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  for (std::size_t pos = line_end + 2; pos < head.size();) {
    auto end = head.find("\r\n", pos);
    if (end == std::string_view::npos || end == pos) break;
    std::string_view h = head.substr(pos, end - pos);
    auto colon = h.find(':');
    if (colon != std::string_view::npos) {
      r.headers.emplace_back(std::string(h.substr(0, colon)),
                             std::string(trim_ascii_space(h.substr(colon + 1))));
    }
    pos = end + 2;
  }
  return r;
}

bool allows_body(unsigned status) {
  return status >= 200 && status != 204 && status != 304;
}

}  // namespace

// ---- recorded_response ------------------------------------------------------------------------

std::string recorded_response::header(std::string_view name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : std::string(it->value());
}

bool recorded_response::has_header(std::string_view name) const {
  return headers.find(name) != headers.end();
}

std::string recorded_response::describe() const {
  std::ostringstream os;
  os << "status " << status << ", outcome " << proxy::to_string(outcome) << ", route \"" << route
     << "\"" << (complete ? ", complete" : ", incomplete") << (reset ? ", RESET" : "") << "\n";
  for (const auto& f : headers)
    os << "  " << f.name_string() << ": " << f.value() << "\n";
  constexpr std::size_t kShown = 1500;
  os << "  body (" << body.size()
     << " bytes): " << (body.size() > kShown ? body.substr(0, kShown) + "…" : body) << "\n";
  for (const auto& m : misuse)
    os << "  MISUSE: " << m << "\n";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const recorded_response& r) {
  return os << r.describe();
}

// ---- fake_exchange ----------------------------------------------------------------------------

fake_exchange::fake_exchange(fake_request req) : body_(std::move(req.body)) {
  header_.method(req.method);
  header_.target(req.target);
  header_.version(11);
  if (!has_line(req.headers, "Host")) header_.insert(http::field::host, "pantry.test");
  for (const auto& [k, v] : req.headers)
    header_.insert(k, v);
  if (!body_.empty() && !has_line(req.headers, "Content-Length")) {
    header_.set(http::field::content_length, std::to_string(body_.size()));
  }
}

std::vector<std::string_view> fake_exchange::header_values(http::field name) const {
  std::vector<std::string_view> out;
  auto [first, last] = header_.equal_range(name);
  for (auto it = first; it != last; ++it)
    out.push_back(it->value());
  return out;
}

asio::awaitable<result<std::size_t>> fake_exchange::read_body(std::span<std::byte> out) {
  const std::size_t n = std::min(out.size(), body_.size() - body_read_);
  std::memcpy(out.data(), body_.data() + body_read_, n);
  body_read_ += n;
  co_return n;
}

proxy::error_code fake_exchange::misuse(std::string what) {
  out_.misuse.push_back(std::move(what));
  return make_error_code(errc::invalid_argument);
}

bool fake_exchange::body_allowed(unsigned status) const {
  return allows_body(status) && header_.method() != http::verb::head;
}

asio::awaitable<proxy::error_code> fake_exchange::respond(http::response<http::string_body> res) {
  if (state_ != state::none) co_return misuse("respond() on an exchange already answered");
  state_ = state::done;
  out_.status = res.result_int();
  const bool with_body = body_allowed(out_.status);
  if (!allows_body(out_.status)) {
    res.erase(http::field::transfer_encoding);
    if (out_.status != 304) res.erase(http::field::content_length);
  } else if (!(header_.method() == http::verb::head && res.has_content_length())) {
    res.content_length(res.body().size());
  }
  out_.headers = res.base();
  if (with_body) out_.body = res.body();
  out_.complete = true;
  co_return proxy::error_code{};
}

asio::awaitable<proxy::error_code> fake_exchange::begin(http::response_header<> header,
                                                        std::optional<std::uint64_t> length) {
  if (state_ != state::none) co_return misuse("begin() on an exchange already answered");
  state_ = state::begun;
  out_.status = header.result_int();
  skip_body_ = !body_allowed(out_.status);
  header.erase(http::field::transfer_encoding);
  if (!allows_body(out_.status)) {
    if (length && out_.status == 304) {
      header.set(http::field::content_length, std::to_string(*length));
    } else {
      header.erase(http::field::content_length);
    }
  } else if (length) {
    length_ = length;
    header.set(http::field::content_length, std::to_string(*length));
  } else {
    header.erase(http::field::content_length);
    header.set(http::field::transfer_encoding, "chunked");
  }
  out_.headers = std::move(header);
  co_return proxy::error_code{};
}

asio::awaitable<proxy::error_code> fake_exchange::write(std::span<const std::byte> bytes) {
  if (state_ != state::begun) co_return misuse("write() outside begin() and end()");
  if (out_.reset) co_return make_error_code(errc::io_error);
  if (skip_body_ || bytes.empty()) co_return proxy::error_code{};
  if (length_ && out_.body.size() + bytes.size() > *length_) {
    misuse("wrote more body bytes than its Content-Length");
    co_return make_error_code(errc::size_mismatch);
  }
  out_.body += text_of(bytes);
  co_return proxy::error_code{};
}

asio::awaitable<proxy::error_code> fake_exchange::write_blob(cache::blob_reader& blob,
                                                             std::uint64_t offset,
                                                             std::uint64_t length) {
  if (state_ != state::begun) co_return misuse("write_blob() outside begin() and end()");
  if (out_.reset) co_return make_error_code(errc::io_error);
  if (skip_body_ || length == 0) co_return proxy::error_code{};
  if (length_ && out_.body.size() + length > *length_) {
    misuse("wrote more body bytes than its Content-Length");
    co_return make_error_code(errc::size_mismatch);
  }
  if (offset > blob.size() || length > blob.size() - offset) {
    co_return misuse("write_blob() of a range outside the blob");
  }
  auto sent = blob.visit(offset, length, [&](std::span<const std::byte> piece) {
    out_.body += text_of(piece);
    return piece.size();
  });
  if (!sent)
    co_return misuse("write_blob(): the cached blob cannot be read: " + sent.error().message);
  co_return proxy::error_code{};
}

asio::awaitable<proxy::error_code> fake_exchange::end() {
  if (state_ != state::begun) co_return misuse("end() without begin()");
  if (out_.reset) co_return make_error_code(errc::io_error);
  if (!skip_body_ && length_ && out_.body.size() < *length_) {
    misuse("end() " + std::to_string(*length_ - out_.body.size()) +
           " bytes short of its Content-Length");
    reset();
    co_return make_error_code(errc::size_mismatch);
  }
  state_ = state::done;
  out_.complete = true;
  co_return proxy::error_code{};
}

void fake_exchange::reset() noexcept {
  out_.reset = true;
  out_.complete = false;
}

void fake_exchange::finish() {
  if (out_.reset) return;
  if (state_ == state::none) misuse("the handler sent no response");
  if (state_ == state::begun) misuse("the handler left its response unfinished");
}

// ---- fake_server ------------------------------------------------------------------------------

void fake_server::route(std::string prefix, proxy::handler h) {
  auto it = std::find_if(routes_.begin(), routes_.end(),
                         [&](const auto& r) { return r.first == prefix; });
  if (it != routes_.end()) {
    it->second = std::move(h);
    return;
  }
  routes_.emplace_back(std::move(prefix), std::move(h));
  std::stable_sort(routes_.begin(), routes_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

result<std::unique_ptr<proxy::listener>> fake_server::adopt_listener(int fd,
                                                                     proxy::listener_options) {
  if (fd >= 0) ::close(fd);
  return error(errc::invalid_argument, "fake_server: no listeners");
}

std::vector<std::string> fake_server::prefixes() const {
  std::vector<std::string> out;
  for (const auto& r : routes_)
    out.push_back(r.first);
  return out;
}

std::optional<std::pair<std::string, proxy::handler>> fake_server::dispatch(
    std::string_view target) const {
  std::string_view path = target.substr(0, target.find('?'));
  for (const auto& r : routes_) {
    if (path.starts_with(r.first)) return r;
  }
  return std::nullopt;
}

// ---- fake_upstream ----------------------------------------------------------------------------

std::string upstream_request::header(std::string_view name) const {
  return first_value(headers, name);
}

bool upstream_request::has_header(std::string_view name) const {
  return has_line(headers, name);
}

std::ostream& operator<<(std::ostream& os, const upstream_request& r) {
  os << r.method << " " << r.target;
  for (const auto& [k, v] : r.headers)
    os << "\n  " << k << ": " << v;
  return os;
}

fake_upstream::fake_upstream() : acceptor_(ctx_, {asio::ip::make_address("127.0.0.1"), 0}) {
  asio::co_spawn(ctx_, accept_loop(), asio::detached);
  thread_ = std::thread([this] { ctx_.run(); });
}

fake_upstream::~fake_upstream() {
  ctx_.stop();
  thread_.join();
}

std::uint16_t fake_upstream::port() const {
  return acceptor_.local_endpoint().port();
}

std::string fake_upstream::base() const {
  return "http://127.0.0.1:" + std::to_string(port());
}

void fake_upstream::script(std::string target, upstream_answer a) {
  std::lock_guard g(mutex_);
  scripts_[{std::string(), std::move(target)}] = std::move(a);
}

void fake_upstream::script(http::verb method, std::string target, upstream_answer a) {
  std::lock_guard g(mutex_);
  scripts_[{std::string(http::to_string(method)), std::move(target)}] = std::move(a);
}

void fake_upstream::script_status(std::string target, unsigned status, header_lines headers,
                                  std::string body) {
  upstream_answer a;
  a.status = status;
  a.headers = std::move(headers);
  a.body = std::move(body);
  script(std::move(target), std::move(a));
}

void fake_upstream::script_failure(std::string target, const upstream_failure& f,
                                   upstream_answer good) {
  if (f.status != 0) {
    script_status(std::move(target), f.status);
    return;
  }
  good.what = f.how;
  script(std::move(target), std::move(good));
}

std::vector<upstream_failure> upstream_failures(bool broken_body) {
  std::vector<upstream_failure> out = {
      {"503", 503},
      {"429", 429},
      {"connection closed", 0, upstream_answer::fault::close},
  };
  if (broken_body) out.push_back({"body broken off", 0, upstream_answer::fault::break_midway});
  return out;
}

void fake_upstream::clear_scripts() {
  std::lock_guard g(mutex_);
  scripts_.clear();
}

std::vector<upstream_request> fake_upstream::requests() const {
  std::lock_guard g(mutex_);
  return requests_;
}

std::vector<upstream_request> fake_upstream::requests_for(std::string_view target) const {
  std::lock_guard g(mutex_);
  std::vector<upstream_request> out;
  for (const auto& r : requests_) {
    if (r.target == target) out.push_back(r);
  }
  return out;
}

std::vector<upstream_request> fake_upstream::requests_for(http::verb method,
                                                          std::string_view target) const {
  std::vector<upstream_request> out;
  for (auto& r : requests_for(target)) {
    if (r.method == http::to_string(method)) out.push_back(std::move(r));
  }
  return out;
}

std::size_t fake_upstream::request_count() const {
  std::lock_guard g(mutex_);
  return requests_.size();
}

std::string fake_upstream::describe_requests() const {
  std::string out = "upstream requests (" + std::to_string(request_count()) + "):";
  for (const auto& r : requests())
    out += "\n  " + r.method + " " + r.target;
  return out;
}

upstream_answer fake_upstream::answer_for(const upstream_request& r) {
  std::lock_guard g(mutex_);
  requests_.push_back(r);
  auto it = scripts_.find({r.method, r.target});
  if (it == scripts_.end()) it = scripts_.find({std::string(), r.target});
  if (it != scripts_.end()) {
    const upstream_answer& scripted = it->second;
    if (scripted.required_authorization.empty() ||
        r.header("Authorization") == scripted.required_authorization) {
      return scripted;
    }
    upstream_answer refused;
    refused.status = 401;
    refused.headers = {{"Content-Type", "application/json"},
                       {"WWW-Authenticate", scripted.challenge}};
    refused.body = R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})";
    return refused;
  }
  upstream_answer a;
  a.status = 404;
  a.headers = {{"Content-Type", "text/plain"}};
  a.body = "the fake upstream has no script for " + r.method + " " + r.target + "\n";
  return a;
}

asio::awaitable<void> fake_upstream::accept_loop() {
  for (;;) {
    auto [ec, s] = co_await acceptor_.async_accept(tok);
    if (ec) co_return;
    asio::co_spawn(ctx_, serve(std::move(s)), asio::detached);
  }
}

asio::awaitable<void> fake_upstream::serve(tcp::socket s) {
  std::string buf;
  for (;;) {
    std::size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      char chunk[4096];
      auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), tok);
      if (ec || buf.size() > kMaxHead) co_return;
      buf.append(chunk, n);
    }
    upstream_request r = parse_head(std::string_view(buf).substr(0, end + 4));
    buf.erase(0, end + 4);
    // pantry sends no bodies upstream; one with a Content-Length is skipped all the same.
    const std::string cl = r.header("Content-Length");
    std::size_t body_size = cl.empty() ? 0 : std::strtoull(cl.c_str(), nullptr, 10);
    while (buf.size() < body_size) {
      char chunk[4096];
      auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), tok);
      if (ec) co_return;
      buf.append(chunk, n);
    }
    buf.erase(0, body_size);

    const upstream_answer a = answer_for(r);
    boost::system::error_code ignored;
    if (a.what == upstream_answer::fault::close) {
      s.shutdown(tcp::socket::shutdown_both, ignored);
      s.close(ignored);
      co_return;
    }
    if (a.what == upstream_answer::fault::hang) {
      // Until the client gives up and closes (or the upstream is destroyed).
      char byte;
      co_await s.async_read_some(asio::buffer(&byte, 1), tok);
      co_return;
    }
    std::string out = "HTTP/1.1 " + std::to_string(a.status) + " Scripted\r\n";
    for (const auto& [k, v] : a.headers)
      out += k + ": " + v + "\r\n";
    if (allows_body(a.status) && !has_line(a.headers, "Content-Length")) {
      out += "Content-Length: " + std::to_string(a.body.size()) + "\r\n";
    }
    out += "\r\n";
    const bool with_body = allows_body(a.status) && r.method != "HEAD";
    if (with_body) {
      out += a.what == upstream_answer::fault::break_midway ? a.body.substr(0, a.body.size() / 2)
                                                            : a.body;
    }
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(out), tok);
    if (wec) co_return;
    if (a.what == upstream_answer::fault::break_midway) {
      s.set_option(tcp::socket::linger(true, 0), ignored);
      s.close(ignored);
      co_return;
    }
  }
}

std::string refused_base() {
  asio::io_context ctx;
  tcp::acceptor a(ctx, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = a.local_endpoint().port();
  a.close();
  return "http://127.0.0.1:" + std::to_string(port);
}

// ---- recalling_store --------------------------------------------------------------------------

// Forwards every call to the real store; while a snapshot is set, the first lookup of each item
// answers from it (service_harness::look_up_as_of). Thread-safe, as the store is: the services
// write from the blocking pool.
class recalling_store final : public cache::store {
 public:
  explicit recalling_store(std::shared_ptr<cache::store> real) : real_(std::move(real)) {}

  cache::store& real() noexcept { return *real_; }

  void recall(std::optional<cache_snapshot> past) {
    std::lock_guard g(mutex_);
    past_ = std::move(past);
    entries_looked_up_.clear();
    blobs_looked_up_.clear();
  }

  result<cache::blob_reader> open_blob(const cache::digest& id) override {
    if (missed_then(id)) return missing(id);
    return real_->open_blob(id);
  }
  result<cache::object_info> stat_blob(const cache::digest& id) override {
    if (missed_then(id)) return missing(id);
    return real_->stat_blob(id);
  }
  result<cache::entry> get_entry(std::string_view key) override {
    {
      std::lock_guard g(mutex_);
      if (past_ && entries_looked_up_.emplace(key).second) {
        auto it = past_->entries.find(key);
        if (it == past_->entries.end()) {
          return error(errc::not_found, "no entry " + std::string(key) + " (as of the snapshot)");
        }
        return it->second;
      }
    }
    return real_->get_entry(key);
  }

  result<cache::blob_writer> begin_blob(const cache::digest& id, std::string media_type,
                                        std::optional<std::uint64_t> expected_size,
                                        bool pinned) override {
    return real_->begin_blob(id, std::move(media_type), expected_size, pinned);
  }
  result<cache::digest> put_blob(std::span<const std::byte> bytes, std::string media_type,
                                 bool pinned) override {
    return real_->put_blob(bytes, std::move(media_type), pinned);
  }
  result<void> set_pinned(const cache::digest& id, bool pinned) override {
    return real_->set_pinned(id, pinned);
  }
  result<void> remove_blob(const cache::digest& id) override { return real_->remove_blob(id); }
  result<void> put_entry(std::string_view key, const cache::entry& e) override {
    return real_->put_entry(key, e);
  }
  result<void> put_entries(std::span<const std::pair<std::string, cache::entry>> items) override {
    return real_->put_entries(items);
  }
  result<void> remove_entry(std::string_view key) override { return real_->remove_entry(key); }
  result<void> for_each_entry(
      std::string_view prefix,
      const std::function<bool(std::string_view, const cache::entry&)>& fn) override {
    return real_->for_each_entry(prefix, fn);
  }
  result<void> put_record(std::string_view key, std::span<const std::byte> value) override {
    return real_->put_record(key, value);
  }
  result<std::vector<std::byte>> get_record(std::string_view key) override {
    return real_->get_record(key);
  }
  result<void> remove_record(std::string_view key) override { return real_->remove_record(key); }
  result<cache::stats> get_stats() override { return real_->get_stats(); }
  result<cache::verify_report> verify(
      const std::function<void(std::uint64_t, std::uint64_t)>& progress) override {
    return real_->verify(progress);
  }
  result<cache::gc_report> gc() override { return real_->gc(); }
  result<std::uint64_t> set_max_size(std::uint64_t bytes) override {
    return real_->set_max_size(bytes);
  }
  result<int> reclaim_readers() override { return real_->reclaim_readers(); }
  result<void> flush() override { return real_->flush(); }
  const cache::options& opts() const noexcept override { return real_->opts(); }

 private:
  // True iff this is the first lookup of `id` since the snapshot was set, and the snapshot
  // found it missing.
  bool missed_then(const cache::digest& id) {
    std::lock_guard g(mutex_);
    return past_ && blobs_looked_up_.insert(id).second && past_->missing_blobs.contains(id);
  }
  static error missing(const cache::digest& id) {
    return error(errc::not_found, "no blob " + id.str() + " (as of the snapshot)");
  }

  const std::shared_ptr<cache::store> real_;
  std::mutex mutex_;
  std::optional<cache_snapshot> past_;                                     // guarded by mutex_
  std::set<std::string, std::less<>> entries_looked_up_;                   // guarded by mutex_
  std::unordered_set<cache::digest, cache::digest_hash> blobs_looked_up_;  // guarded by mutex_
};

// ---- service_harness --------------------------------------------------------------------------

service_harness::service_harness(std::chrono::milliseconds upstream_header_timeout) {
  char tmpl[] = "/tmp/pantry-service-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  }
  dir_ = tmpl;
  pool_ = std::make_unique<asio::thread_pool>(2);
  ctx_ = std::make_unique<asio::io_context>(1);
  work_.emplace(ctx_->get_executor());

  cache::options o;
  o.data_dir = dir_;
  o.durable = false;
  auto s = cache::store::open(o);
  if (!s) {
    ADD_FAILURE() << "cannot open a cache in " << dir_ << ": " << s.error().message;
  } else {
    recall_ = std::make_shared<recalling_store>(*s);
    store_ = recall_;
  }
  metrics_ = std::make_shared<proxy::metrics_registry>();
  proxy::client_options co;
  co.connect_timeout = std::chrono::milliseconds(2000);
  co.header_timeout = upstream_header_timeout;
  co.idle_timeout = std::chrono::milliseconds(2000);
  co.use_env_proxy = false;  // the machine's proxy settings must not reach 127.0.0.1 tests
  client_ = proxy::client::create(ctx_->get_executor(), co);
  flights_ = std::make_shared<proxy::flight_table>(store_, client_);
  server_ = std::make_unique<fake_server>(ctx_->get_executor());
}

service_harness::~service_harness() {
  settle();
  server_->clear();
  server_.reset();
  flights_.reset();
  client_.reset();
  work_.reset();
  ctx_->poll();
  pool_->join();
  ctx_.reset();
  metrics_.reset();
  store_.reset();
  recall_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

template <class Pred>
bool service_harness::drive(Pred done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    ctx_->run_one_for(std::chrono::milliseconds(5));
  }
  ctx_->poll();
  return true;
}

bool service_harness::settle() {
  // A flight leaves the table on its executor (a strand of ctx_, run here), in the handler that
  // then lets go of what its fetch held: a timer of ctx_ and, through the table, the client. So
  // once the table is empty between two handlers, no flight holds any of it.
  return drive([this] { return flights_->size() == 0; }, kRequestLimit);
}

namespace {

// Owns its handler: the route table may be changed while a request runs.
asio::awaitable<void> run_handler(proxy::handler h, fake_exchange& ex) {
  co_await h(ex);
}

}  // namespace

recorded_response service_harness::serve(fake_request req) {
  std::vector<fake_request> one;
  one.push_back(std::move(req));
  return serve_together(std::move(one)).front();
}

std::vector<recorded_response> service_harness::serve_together(std::vector<fake_request> reqs) {
  struct running {
    std::string target;
    std::unique_ptr<fake_exchange> ex;
    bool done = false;
    std::string thrown;
  };
  // Shared with the completion handlers, so that a handler that outlives this call (a stuck one,
  // finished off by the destructor) still finds its exchange.
  auto runs = std::make_shared<std::vector<running>>(reqs.size());
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    (*runs)[i].target = reqs[i].target;
    (*runs)[i].ex = std::make_unique<fake_exchange>(std::move(reqs[i]));
  }
  for (std::size_t i = 0; i < runs->size(); ++i) {
    running& r = (*runs)[i];
    auto route = server_->dispatch(r.target);
    if (!route) {
      r.ex->recorded().misuse.push_back("no route takes " + r.target);
      r.done = true;
      continue;
    }
    r.ex->recorded().route = route->first;
    asio::co_spawn(asio::make_strand(*ctx_), run_handler(std::move(route->second), *r.ex),
                   [runs, i](std::exception_ptr e) {
                     running& me = (*runs)[i];
                     me.done = true;
                     if (!e) return;
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& x) {
                       me.thrown = x.what();
                     } catch (...) {
                       me.thrown = "a non-exception";
                     }
                   });
  }
  auto all_done = [&] {
    return std::all_of(runs->begin(), runs->end(), [](const running& r) { return r.done; });
  };
  std::vector<recorded_response> out;
  if (!drive(all_done, kRequestLimit)) {
    for (const auto& r : *runs) {
      if (!r.done) {
        ADD_FAILURE() << "the handler of " << r.target << " still runs after "
                      << kRequestLimit.count() << " ms; so far: " << r.ex->recorded();
      }
      out.push_back(r.ex->recorded());
    }
    return out;
  }
  // A flight belongs to no request: let the ones these requests started end, so that the next
  // request sees their outcome in the cache.
  if (!settle()) {
    ADD_FAILURE() << "a flight is still running " << kRequestLimit.count()
                  << " ms after its requests ended";
  }
  for (auto& r : *runs) {
    if (!r.thrown.empty()) r.ex->recorded().misuse.push_back("the handler threw: " + r.thrown);
    r.ex->finish();
    out.push_back(r.ex->recorded());
  }
  return out;
}

recorded_response service_harness::get(std::string target, header_lines headers) {
  return serve({http::verb::get, std::move(target), std::move(headers), {}});
}

recorded_response service_harness::head(std::string target, header_lines headers) {
  return serve({http::verb::head, std::move(target), std::move(headers), {}});
}

std::uint64_t service_harness::blob_count() {
  auto s = store_->get_stats();
  if (!s) {
    ADD_FAILURE() << "cache stats: " << s.error().message;
    return 0;
  }
  return s->objects;
}

cache_snapshot service_harness::snapshot() {
  cache_snapshot out;
  cache::store& real = recall_->real();  // a snapshot set earlier must not answer these lookups
  auto walked = real.for_each_entry("", [&](std::string_view key, const cache::entry& e) {
    out.entries.emplace(std::string(key), e);
    return true;
  });
  if (!walked) ADD_FAILURE() << "cache walk: " << walked.error().message;
  for (const auto& [key, e] : out.entries) {
    if (e.target && !real.stat_blob(*e.target)) out.missing_blobs.insert(*e.target);
  }
  return out;
}

void service_harness::look_up_as_of(cache_snapshot past) {
  recall_->recall(std::move(past));
}

void service_harness::look_up_now() {
  recall_->recall(std::nullopt);
}

std::pair<recorded_response, recorded_response> service_harness::serve_racing(fake_request first,
                                                                              fake_request second) {
  auto b_looks = snapshot();
  auto a = serve(std::move(first));
  look_up_as_of(std::move(b_looks));
  auto b = serve(std::move(second));
  look_up_now();
  return {std::move(a), std::move(b)};
}

double service_harness::metric(std::string_view name, const proxy::labels& labels) const {
  const std::string text = metrics_->render();
  double sum = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto name_end = line.find_first_of("{ ");
    if (line.compare(0, name_end, name) != 0 || name_end != name.size()) continue;
    std::string_view series(line);
    const auto value_at = series.rfind(' ');
    std::string_view label_text =
        line[name_end] == '{' ? series.substr(name_end, value_at - name_end) : std::string_view();
    bool all = std::all_of(labels.begin(), labels.end(), [&](const auto& kv) {
      const std::string want = kv.first + "=\"" + kv.second + "\"";
      return label_text.find("{" + want) != std::string_view::npos ||
             label_text.find("," + want) != std::string_view::npos;
    });
    if (all) sum += std::strtod(line.c_str() + value_at + 1, nullptr);
  }
  return sum;
}

// ---- helpers ----------------------------------------------------------------------------------

std::string sha256_hex(std::string_view bytes) {
  return cache::digest::of(bytes).hex();
}

std::string pattern(std::size_t n, unsigned seed) {
  std::string out(n, '\0');
  std::mt19937 gen(seed);
  for (auto& c : out)
    c = static_cast<char>(gen());
  return out;
}

}  // namespace pantry::registry::testing
