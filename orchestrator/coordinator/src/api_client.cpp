#include "pantry/orchestrator/coordinator/api_client.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/parse.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <span>
#include <system_error>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

// How long "no idle timeout" is: the upstream client always arms one, and a steady_clock time
// point a year ahead is far from overflowing.
constexpr std::chrono::milliseconds kForever = std::chrono::hours(24 * 365);
// How much of a failed answer's body is read and quoted.
constexpr std::size_t kMaxMessage = 500;
constexpr std::size_t kChunk = 64 * 1024;

bool is_success(unsigned status) {
  return status >= 200 && status < 300;
}

// The server's message in an error body: a JSON object's "error" or "message", an OCI error
// list's first message, else the text itself.
std::string message_of(std::string_view body) {
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r' || body.back() == ' '))
    body.remove_suffix(1);
  if (!body.empty() && body.front() == '{') {
    boost::system::error_code ec;
    auto v = json::parse(body, ec);
    if (!ec && v.is_object()) {
      const auto& o = v.get_object();
      for (std::string_view key : {"error", "message"}) {
        if (auto m = o.if_contains(key); m && m->is_string()) return std::string(m->get_string());
      }
      if (auto list = o.if_contains("errors"); list && list->is_array()) {
        const auto& a = list->get_array();
        if (!a.empty() && a.front().is_object()) {
          if (auto m = a.front().get_object().if_contains("message"); m && m->is_string()) {
            return std::string(m->get_string());
          }
        }
      }
    }
  }
  if (body.size() > kMaxMessage) return std::string(body.substr(0, kMaxMessage)) + "…";
  return std::string(body);
}

errc code_of(unsigned status) {
  switch (status) {
    case 400:
      return errc::invalid_argument;
    case 404:
      return errc::not_found;
    case 409:
      return errc::already_exists;
    default:
      return errc::io_error;
  }
}

}  // namespace

class api_client::impl {
 public:
  impl(std::string base_url, std::string token, api_client_options opt)
      : base_url_(std::move(base_url)),
        token_(std::move(token)),
        opt_(std::move(opt)),
        strand_(ioc_.get_executor()) {
    while (!base_url_.empty() && base_url_.back() == '/')
      base_url_.pop_back();
    proxy::client_options co;
    co.use_env_proxy = opt_.use_env_proxy;
    co.user_agent = opt_.user_agent;
    co.connect_timeout = opt_.connect_timeout;
    co.header_timeout = opt_.header_timeout;
    co.idle_timeout = opt_.idle_timeout;
    client_ = proxy::client::create(strand_, co);
    co.idle_timeout = opt_.stream_idle_timeout.value_or(kForever);
    stream_client_ = proxy::client::create(strand_, co);
  }

  ~impl() {
    client_.reset();
    stream_client_.reset();
    ioc_.restart();
    ioc_.run();  // let go of pooled connections on their own context
  }

  std::optional<error> run_to_end(asio::awaitable<void> task) {
    std::optional<error> failed;
    asio::co_spawn(strand_, std::move(task), [&failed](std::exception_ptr e) {
      if (e) failed.emplace(errc::io_error, "bug: an exception escaped pantry's API client");
    });
    ioc_.restart();
    ioc_.run();
    return failed;
  }

  proxy::request request(http::verb method, const std::string& path, std::string body,
                         http::fields headers) const {
    proxy::request req;
    req.method = method;
    req.url = base_url_ + path;
    req.headers = std::move(headers);
    req.headers.set(http::field::authorization, "Bearer " + token_);
    req.body = std::move(body);
    req.follow_redirects = false;
    req.tls.ca_file = opt_.ca_file;
    return req;
  }

  static reply reply_of(http::verb method, std::string url, const proxy::response& res) {
    reply out;
    out.status = res.status();
    out.headers = res.headers();
    out.method = std::string(http::to_string(method));
    out.url = std::move(url);
    return out;
  }

  asio::awaitable<result<reply>> call(http::verb method, std::string path, std::string body,
                                      http::fields headers, std::size_t limit) {
    proxy::request req = request(method, path, std::move(body), std::move(headers));
    std::string url = req.url;
    auto sent = co_await client_->send(std::move(req));
    if (!sent) co_return sent.error();
    reply out = reply_of(method, std::move(url), *sent);
    if (method != http::verb::head) {
      auto text = co_await sent->read_all(limit);
      if (!text) co_return text.error();
      out.body = std::move(*text);
    }
    co_return out;
  }

  // The error for a response that is not a success, with what the server said.
  asio::awaitable<error> refused(http::verb method, const std::string& url, proxy::response& res) {
    reply r = reply_of(method, url, res);
    auto text = co_await res.read_all(kMaxAnswer);
    if (text) r.body = std::move(*text);
    co_return failure("", r);
  }

  asio::awaitable<result<unsigned>> download(std::string path, fs::path out_file) {
    proxy::request req = request(http::verb::get, path, {}, {});
    const std::string url = req.url;
    auto sent = co_await client_->send(std::move(req));
    if (!sent) co_return sent.error();
    proxy::response res = std::move(*sent);
    if (!is_success(res.status())) {
      error e = co_await refused(http::verb::get, url, res);
      co_return e;
    }
    fs::path part = out_file;
    part += ".part";
    std::FILE* f = std::fopen(part.c_str(), "wb");
    if (!f) {
      co_return error(errc::io_error, "downloading " + url + ": cannot write " + part.string() +
                                          ": " + std::strerror(errno));
    }
    std::optional<error> failed;
    std::vector<std::byte> buf(kChunk);
    for (;;) {
      auto n = co_await res.read_some(buf);
      if (!n) {
        failed = n.error();
        break;
      }
      if (*n == 0) break;
      if (std::fwrite(buf.data(), 1, *n, f) != *n) {
        failed = error(errc::io_error, "downloading " + url + ": cannot write " + part.string() +
                                           ": " + std::strerror(errno));
        break;
      }
    }
    if (std::fclose(f) != 0 && !failed) {
      failed = error(errc::io_error, "downloading " + url + ": cannot write " + part.string() +
                                         ": " + std::strerror(errno));
    }
    std::error_code ec;
    if (!failed) {
      fs::rename(part, out_file, ec);
      if (ec) {
        failed = error(errc::io_error, "downloading " + url + ": cannot rename " + part.string() +
                                           " to " + out_file.string() + ": " + ec.message());
      }
    }
    if (failed) {
      fs::remove(part, ec);
      co_return *failed;
    }
    co_return res.status();
  }

  asio::awaitable<result<unsigned>> stream(http::verb method, std::string path, std::string body,
                                           http::fields headers,
                                           const std::function<bool(std::string_view)>& on_bytes) {
    proxy::request req = request(method, path, std::move(body), std::move(headers));
    const std::string url = req.url;
    auto sent = co_await stream_client_->send(std::move(req));
    if (!sent) co_return sent.error();
    proxy::response res = std::move(*sent);
    if (!is_success(res.status())) {
      error e = co_await refused(method, url, res);
      co_return e;
    }
    std::vector<std::byte> buf(kChunk);
    for (;;) {
      auto n = co_await res.read_some(buf);
      if (!n) co_return n.error();
      if (*n == 0) break;
      std::string_view bytes(reinterpret_cast<const char*>(buf.data()), *n);
      if (!on_bytes(bytes)) break;
    }
    co_return res.status();
  }

  const std::string& base_url() const noexcept { return base_url_; }
  const api_client_options& options() const noexcept { return opt_; }
  asio::any_io_executor executor() const { return strand_; }
  const std::shared_ptr<proxy::client>& http_client() const noexcept { return client_; }

 private:
  std::string base_url_;
  std::string token_;
  api_client_options opt_;
  asio::io_context ioc_;
  asio::strand<asio::io_context::executor_type> strand_;
  std::shared_ptr<proxy::client> client_;
  std::shared_ptr<proxy::client> stream_client_;  // its idle timeout is stream_idle_timeout's
};

api_client::api_client(std::string base_url, std::string token, api_client_options opt)
    : impl_(std::make_unique<impl>(std::move(base_url), std::move(token), std::move(opt))) {}

api_client::~api_client() = default;

result<api_client::reply> api_client::call(http::verb method, std::string path, std::string body,
                                           http::fields headers, std::size_t limit) {
  return run(impl_->call(method, std::move(path), std::move(body), std::move(headers), limit));
}

result<api_client::reply> api_client::put_file(http::verb method, std::string path,
                                               const fs::path& file, std::string content_type,
                                               http::fields headers) {
  const std::string url = impl_->base_url() + path;
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec) {
    return error(errc::io_error, "sending " + file.string() + " to " + url + ": " + ec.message());
  }
  if (size > impl_->options().max_upload) {
    return error(errc::size_mismatch, "sending " + file.string() + " to " + url + ": " +
                                          std::to_string(size) + " bytes, more than the " +
                                          std::to_string(impl_->options().max_upload) +
                                          " this client sends");
  }
  std::string body(size, '\0');
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) {
    return error(errc::io_error,
                 "sending " + file.string() + " to " + url + ": " + std::strerror(errno));
  }
  const std::size_t got = std::fread(body.data(), 1, body.size(), f);
  const bool short_read = got != body.size() || std::fgetc(f) != EOF;
  std::fclose(f);
  if (short_read) {
    return error(errc::io_error, "sending " + file.string() + " to " + url +
                                     ": the file changed size while it was read");
  }
  headers.set(http::field::content_type, content_type);
  return call(method, std::move(path), std::move(body), std::move(headers));
}

result<unsigned> api_client::download(std::string path, const fs::path& out_file) {
  return run(impl_->download(std::move(path), out_file));
}

result<unsigned> api_client::stream(http::verb method, std::string path, std::string body,
                                    const std::function<bool(std::string_view)>& on_bytes,
                                    http::fields headers) {
  return run(impl_->stream(method, std::move(path), std::move(body), std::move(headers), on_bytes));
}

error api_client::failure(std::string_view what, const reply& r) {
  std::string text(what);
  if (!text.empty()) text += ": ";
  text += r.method + " " + r.url + " answered " + std::to_string(r.status);
  std::string message = message_of(r.body);
  if (!message.empty()) text += ": " + message;
  return error(code_of(r.status), std::move(text));
}

const std::string& api_client::base_url() const noexcept {
  return impl_->base_url();
}

asio::any_io_executor api_client::executor() const {
  return impl_->executor();
}

const std::shared_ptr<proxy::client>& api_client::http_client() const noexcept {
  return impl_->http_client();
}

std::optional<error> api_client::run_to_end(asio::awaitable<void> task) {
  return impl_->run_to_end(std::move(task));
}

}  // namespace pantry::orchestrator::coordinator
