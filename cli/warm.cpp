// `pantry cache warm`: requirements files -> project pages -> files, through pantry over HTTP.

#include "warm.h"

#include "pantry/app/human.h"
#include "pantry/cache/digest.h"
#include "pantry/config/config.h"
#include "pantry/proxy/client.h"
#include "pantry/registry/pypi/negotiate.h"
#include "pantry/registry/pypi/requirements.h"
#include "pantry/registry/pypi/simple.h"
#include "pantry/text.h"
#include "pantry/text_file.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <sys/ioctl.h>
#include <unistd.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

namespace pantry::cli {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace pypi = pantry::registry::pypi;
using pantry::app::human_bytes;

constexpr unsigned kMaxJobs = 64;
// pantry answers a file's header once its upstream has answered, and a generated .metadata only
// after the whole wheel has come (the wheel is fetched first, so that is rare); these are wide
// enough for pantry's own upstream timeouts to report first.
constexpr std::chrono::seconds kConnectTimeout{10};
constexpr std::chrono::seconds kHeaderTimeout{300};
constexpr std::chrono::seconds kIdleTimeout{120};
// The largest project page read; PyPI's biggest JSON pages are tens of MiB.
constexpr std::size_t kMaxPageSize = std::size_t{256} << 20;
constexpr std::size_t kMaxErrorBody = 64 * 1024;
constexpr std::size_t kReadBuffer = 64 * 1024;
// How often the progress line is redrawn at most while bytes arrive.
constexpr std::chrono::milliseconds kRedrawEvery{100};

std::string plural(std::size_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

// The first line of an error body, shortened: pantry's error bodies are one line of plain text.
std::string first_line(std::string_view body) {
  body = body.substr(0, body.find('\n'));
  if (body.size() > 300) return std::string(body.substr(0, 300)) + "...";
  return std::string(body);
}

// The base URL pantry serves /simple/ and /files/ under, ending in '/'. A URL ending in /simple/
// (a PIP_INDEX_URL) is taken to mean its parent.
result<std::string> base_url(std::string url) {
  const std::string lower = ascii_lower(url);
  const bool http_url = lower.starts_with("http://") || lower.starts_with("https://");
  const std::size_t authority = lower.find("://") + 3;
  if (!http_url || url.size() <= authority || url[authority] == '/') {
    return error(errc::invalid_argument,
                 "--url " + url + ": expected pantry's URL, e.g. http://pantry.internal:8585/");
  }
  if (url.find('/', authority) == std::string::npos) url += '/';
  if (url.ends_with("/simple")) url += '/';
  if (url.ends_with("/simple/")) url.resize(url.size() - std::string_view("simple/").size());
  if (!url.ends_with("/")) url += '/';
  return url;
}

// http://<listen>/ of the config, with a wildcard address replaced by loopback.
std::string url_from_listen(const config::listen_address& listen) {
  std::string host = listen.host;
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") host = "127.0.0.1";
  if (host.find(':') != std::string::npos && !host.starts_with("[")) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(listen.port) + "/";
}

unsigned terminal_width() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
  return 80;
}

// Failures, notes and the progress line on stderr. On a terminal, one line redrawn in place
// (messages are printed above it); otherwise nothing but the messages.
class reporter {
 public:
  explicit reporter(bool tty) : tty_(tty), width_(tty ? terminal_width() : 80) {}

  void message(const std::string& line) {
    clear();
    std::cerr << "pantry: " << line << '\n';
    draw();
  }

  void resolving(std::size_t done, std::size_t total) {
    status_ = "resolving " + std::to_string(done) + "/" + std::to_string(total) + " pins";
    draw();
  }

  void downloading(std::size_t done, std::size_t total, std::uint64_t bytes,
                   std::uint64_t total_bytes, std::string_view current, bool force) {
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_draw_ < kRedrawEvery) return;
    last_draw_ = now;
    constexpr std::size_t kBar = 20;
    const double fraction =
        total_bytes > 0
            ? std::min(1.0, static_cast<double>(bytes) / static_cast<double>(total_bytes))
        : total > 0 ? static_cast<double>(done) / static_cast<double>(total)
                    : 1.0;
    const auto filled = static_cast<std::size_t>(fraction * kBar);
    std::string line = "[" + std::string(filled, '#') + std::string(kBar - filled, '.') + "] " +
                       std::to_string(done) + "/" + std::to_string(total) + " files  " +
                       human_bytes(bytes);
    if (total_bytes > 0) line += " of " + human_bytes(total_bytes);
    if (!current.empty()) line += "  " + std::string(current);
    status_ = std::move(line);
    draw();
  }

  // Removes the progress line for good.
  void finish() {
    clear();
    status_.clear();
  }

 private:
  void clear() {
    if (tty_ && drawn_) std::cerr << "\r\033[K" << std::flush;
    drawn_ = false;
  }

  void draw() {
    if (!tty_ || status_.empty()) return;
    std::string shown = status_.substr(0, width_ - 1);
    std::cerr << "\r\033[K" << shown << std::flush;
    drawn_ = true;
  }

  const bool tty_;
  const unsigned width_;
  std::string status_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

// One file to fetch, with what the index promised about it.
struct download {
  std::size_t pin = 0;  // index into warmer::pins_
  std::string filename;
  std::string url;
  std::optional<cache::digest> sha256;
  std::optional<std::uint64_t> size;
  bool metadata = false;  // the index advertises <url>.metadata
  std::optional<cache::digest> metadata_sha256;
};

class warmer {
 public:
  warmer(const warm_options& opt, std::vector<pypi::pin> pins, std::string base,
         std::shared_ptr<proxy::client> client, reporter& report)
      : pins_(std::move(pins)),
        base_(std::move(base)),
        client_(std::move(client)),
        report_(report) {
    filter_.platforms = opt.platforms;
    filter_.python = opt.python_version;
  }

  // Phase 1: one worker of `jobs` reading project pages and choosing files.
  asio::awaitable<void> resolve_worker() {
    while (next_pin_ < pins_.size()) {
      const std::size_t i = next_pin_++;
      co_await resolve(i);
      ++resolved_;
      report_.resolving(resolved_, pins_.size());
    }
  }

  // Phase 2: one worker of `jobs` fetching files.
  asio::awaitable<void> download_worker() {
    while (next_download_ < downloads_.size()) {
      const std::size_t i = next_download_++;
      co_await fetch_dist(downloads_[i]);
      ++files_done_;
      progress({}, true);
    }
  }

  std::size_t pin_count() const noexcept { return pins_.size(); }
  std::size_t download_count() const noexcept { return downloads_.size(); }
  std::size_t failures() const noexcept { return failures_; }

  std::string summary() const {
    std::string s = "warmed " + plural(files_ok_, "file", "files") + " (" + human_bytes(bytes_ok_) +
                    ", with " + plural(metadata_ok_, ".metadata file", ".metadata files") +
                    ") for " + plural(pins_.size(), "pin", "pins") + ": " +
                    std::to_string(failures_) + " failed";
    if (no_match_ > 0) {
      s += ", " + plural(no_match_, "pin", "pins") + " with no file for the platform";
    }
    if (hash_skipped_ > 0) {
      s += ", " + plural(hash_skipped_, "file", "files") + " left out by --hash";
    }
    return s;
  }

 private:
  std::string page_url(const pypi::pin& p) const { return base_ + "simple/" + p.name + "/"; }

  void fail(const pypi::pin& p, const std::string& what) {
    ++failures_;
    report_.message("FAILED " + p.where + ": " + what);
  }

  void progress(std::string_view current, bool force) {
    report_.downloading(files_done_, downloads_.size(), bytes_seen_, bytes_expected_, current,
                        force);
  }

  // The body of an answer that is not 200, as a reason.
  asio::awaitable<std::string> status_reason(proxy::response& res, const std::string& url) {
    std::string reason = "GET " + url + ": HTTP " + std::to_string(res.status());
    auto body = co_await res.read_all(kMaxErrorBody);
    if (body && !body->empty()) reason += ": " + first_line(*body);
    co_return reason;
  }

  asio::awaitable<void> resolve(std::size_t index) {
    const pypi::pin& p = pins_[index];
    proxy::request req;
    req.url = page_url(p);
    // pantry answers JSON; HTML is there for an --url that is a PEP 503 index of another kind.
    req.headers.set(http::field::accept, std::string(pypi::kContentTypeJson) + ", " +
                                             std::string(pypi::kContentTypeHtml) +
                                             ";q=0.2, text/html;q=0.1");
    req.headers.set(http::field::accept_encoding, "identity");
    auto res = co_await client_->send(req);
    if (!res) {
      fail(p, p.str() + ": " + res.error().message);
      co_return;
    }
    if (res->status() != 200) {
      std::string reason = co_await status_reason(*res, req.url);
      fail(p, p.str() + ": " + reason);
      co_return;
    }
    auto body = co_await res->read_all(kMaxPageSize);
    if (!body) {
      fail(p, p.str() + ": " + body.error().message);
      co_return;
    }
    std::string_view type;
    if (auto it = res->headers().find(http::field::content_type); it != res->headers().end()) {
      type = it->value();
    }
    const bool html = type.starts_with("text/html") || type.starts_with(pypi::kContentTypeHtml);
    auto page = html ? pypi::parse_project_html(*body, res->url())
                     : pypi::parse_project_json(*body, res->url());
    if (!page) {
      fail(p, p.str() + ": " + page.error().message);
      co_return;
    }
    const auto choice = pypi::choose_files(*page, p, filter_);
    hash_skipped_ += choice.hash_skipped;
    switch (choice.result) {
      case pypi::file_choice::outcome::ok:
        break;
      case pypi::file_choice::outcome::no_matching_file:
        ++no_match_;
        report_.message("note: " + p.where + ": " + choice.message + "; nothing fetched for it");
        co_return;
      case pypi::file_choice::outcome::no_such_version:
      case pypi::file_choice::outcome::no_allowed_hash:
        fail(p, choice.message);
        co_return;
    }
    for (auto i : choice.files) {
      const auto& f = page->files[i];
      download d;
      d.pin = index;
      d.filename = f.filename;
      d.url = f.url;
      d.sha256 = f.sha256();
      d.size = f.size;
      if (f.core_metadata) {
        d.metadata = true;
        if (auto it = f.core_metadata->find("sha256"); it != f.core_metadata->end()) {
          if (auto digest = cache::digest::parse_hex(it->second)) d.metadata_sha256 = *digest;
        }
      }
      if (d.size) bytes_expected_ += *d.size;
      downloads_.push_back(std::move(d));
    }
  }

  // GETs `url` and reads the body to its end, checking size and sha256 where they are known.
  // Returns the number of body bytes, or the reason it failed.
  asio::awaitable<result<std::uint64_t>> fetch(const std::string& url,
                                               std::optional<cache::digest> sha256,
                                               std::optional<std::uint64_t> size,
                                               const std::string& name) {
    proxy::request req;
    req.url = url;
    req.headers.set(http::field::accept_encoding, "identity");
    auto res = co_await client_->send(req);
    if (!res) co_return res.error();
    if (res->status() != 200) {
      std::string reason = co_await status_reason(*res, url);
      co_return error(errc::io_error, reason);
    }
    cache::hasher hasher;
    std::vector<std::byte> buf(kReadBuffer);
    std::uint64_t got = 0;
    for (;;) {
      auto n = co_await res->read_some(buf);
      if (!n) co_return n.error();
      if (*n == 0) break;
      hasher.update(std::span<const std::byte>(buf).first(*n));
      got += *n;
      bytes_seen_ += *n;
      progress(name, false);
    }
    if (size && got != *size) {
      co_return error(errc::size_mismatch, "GET " + url + ": " + std::to_string(got) +
                                               " bytes, the index lists " + std::to_string(*size));
    }
    const cache::digest digest = hasher.finish();
    if (sha256 && digest != *sha256) {
      co_return error(errc::digest_mismatch, "GET " + url + ": sha256 " + digest.hex() +
                                                 ", the index lists " + sha256->hex());
    }
    co_return got;
  }

  asio::awaitable<void> fetch_dist(const download& d) {
    const pypi::pin& p = pins_[d.pin];
    auto got = co_await fetch(d.url, d.sha256, d.size, d.filename);
    if (!got) {
      fail(p, p.str() + ": " + d.filename + ": " + got.error().message);
      co_return;
    }
    ++files_ok_;
    bytes_ok_ += *got;
    if (!d.metadata) co_return;
    // After the wheel: pantry makes a missing .metadata from the cached wheel.
    const std::string metadata_url = d.url + ".metadata";
    const std::string metadata_name = d.filename + ".metadata";
    auto meta = co_await fetch(metadata_url, d.metadata_sha256, std::nullopt, metadata_name);
    if (!meta) {
      fail(p, p.str() + ": " + metadata_name + ": " + meta.error().message);
      co_return;
    }
    ++metadata_ok_;
    bytes_ok_ += *meta;
  }

  const std::vector<pypi::pin> pins_;
  const std::string base_;
  const std::shared_ptr<proxy::client> client_;
  reporter& report_;
  pypi::file_filter filter_;

  // Touched only by coroutines of one single-threaded io_context: no locks.
  std::size_t next_pin_ = 0;
  std::size_t resolved_ = 0;
  std::vector<download> downloads_;
  std::size_t next_download_ = 0;
  std::size_t files_done_ = 0;
  std::size_t files_ok_ = 0;
  std::size_t metadata_ok_ = 0;
  std::size_t failures_ = 0;
  std::size_t no_match_ = 0;
  std::size_t hash_skipped_ = 0;
  std::uint64_t bytes_ok_ = 0;
  std::uint64_t bytes_seen_ = 0;
  std::uint64_t bytes_expected_ = 0;
};

// Runs `workers` copies of `make()` on `ioc` until all have finished; an exception escaping one
// (none is expected) is rethrown here.
template <class Make>
void run_workers(asio::io_context& ioc, std::size_t workers, Make make) {
  for (std::size_t i = 0; i < workers; ++i) {
    asio::co_spawn(ioc, make(), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
  }
  ioc.restart();
  ioc.run();
}

std::optional<std::pair<unsigned, unsigned>> parse_python_version(std::string_view s) {
  const std::size_t dot = s.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 >= s.size() || dot > 2 ||
      s.size() - dot - 1 > 3) {
    return std::nullopt;
  }
  unsigned major = 0;
  unsigned minor = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == dot) continue;
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    unsigned& n = i < dot ? major : minor;
    n = n * 10 + static_cast<unsigned>(s[i] - '0');
  }
  return std::pair(major, minor);
}

}  // namespace

result<warm_options> parse_warm_args(const std::vector<std::string>& args) {
  warm_options opt;
  auto usage = [](std::string message) {
    return error(errc::invalid_argument, std::move(message));
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string name;
    std::optional<std::string> value;
    if (a == "-r") {
      name = "requirement";
    } else if (a.starts_with("-r") && !a.starts_with("--")) {
      name = "requirement";
      value = a.substr(2);
    } else if (a.starts_with("--")) {
      name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      }
    } else {
      return usage("cache warm takes no argument " + a + "; name requirements files with -r FILE");
    }
    static const std::vector<std::string_view> kKnown = {
        "requirement", "url", "config", "platform", "python-version", "jobs"};
    if (std::find(kKnown.begin(), kKnown.end(), name) == kKnown.end()) {
      return usage("unknown option " + a + " for cache warm");
    }
    if (!value) {
      if (i + 1 >= args.size()) {
        return usage("option " + (name == "requirement" ? std::string("-r") : "--" + name) +
                     " needs a value");
      }
      value = args[++i];
    }
    if (value->empty()) return usage("option --" + name + " has an empty value");
    if (name == "requirement") {
      opt.requirement_files.push_back(*value);
    } else if (name == "url") {
      auto base = base_url(*value);
      if (!base) return usage(base.error().message);
      opt.url = *base;
    } else if (name == "config") {
      opt.config_file = *value;
    } else if (name == "platform") {
      std::string tag;
      for (char c : *value) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (c == '-' || c == '.') c = '_';
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
          return usage("--platform " + *value +
                       ": not a platform tag (e.g. manylinux2014_x86_64, win_amd64, any)");
        }
        tag += c;
      }
      opt.platforms.push_back(tag);
    } else if (name == "python-version") {
      auto v = parse_python_version(*value);
      if (!v) return usage("--python-version " + *value + ": expected X.Y, e.g. 3.11");
      opt.python_version = v;
    } else if (name == "jobs") {
      unsigned n = 0;
      bool digits = value->size() <= 3;
      for (char c : *value) {
        digits = digits && c >= '0' && c <= '9';
        if (digits) n = n * 10 + static_cast<unsigned>(c - '0');
      }
      if (!digits || n == 0 || n > kMaxJobs) {
        return usage("--jobs " + *value + ": expected a number from 1 to " +
                     std::to_string(kMaxJobs));
      }
      opt.jobs = n;
    }
  }
  if (opt.requirement_files.empty()) {
    return usage("cache warm needs at least one requirements file: -r FILE");
  }
  if (opt.url && opt.config_file) {
    return usage("cache warm takes --url or --config, not both");
  }
  return opt;
}

int run_warm(const warm_options& opt) {
  auto reqs = pypi::load_requirements(opt.requirement_files, read_text_file);
  if (!reqs.errors.empty()) {
    for (const auto& e : reqs.errors)
      std::cerr << "pantry: " << e << '\n';
    std::cerr << "pantry: cache warm: " << plural(reqs.errors.size(), "problem", "problems")
              << " in the requirements; nothing fetched\n";
    return 2;
  }

  std::string url;
  if (opt.url) {
    url = *opt.url;
  } else {
    config::config c = config::defaults();
    if (opt.config_file) {
      auto loaded = config::load_file(*opt.config_file);
      if (!loaded) {
        std::cerr << "pantry: " << loaded.error().message << '\n';
        return 1;
      }
      c = *loaded;
    }
    url = url_from_listen(c.listen);
  }
  auto base = base_url(url);
  if (!base) {
    std::cerr << "pantry: " << base.error().message << '\n';
    return 2;
  }

  reporter report(isatty(STDERR_FILENO) != 0);
  asio::io_context ioc;
  proxy::client_options co;
  co.connect_timeout = kConnectTimeout;
  co.header_timeout = kHeaderTimeout;
  co.idle_timeout = kIdleTimeout;
  co.max_idle_per_host = opt.jobs;
  co.user_agent = "pantry-cache-warm/" PANTRY_VERSION;
  auto client = proxy::client::create(ioc.get_executor(), co);
  warmer w(opt, std::move(reqs.pins), *base, client, report);
  client.reset();

  run_workers(ioc, std::min<std::size_t>(opt.jobs, w.pin_count()),
              [&w] { return w.resolve_worker(); });
  run_workers(ioc, std::min<std::size_t>(opt.jobs, w.download_count()),
              [&w] { return w.download_worker(); });
  report.finish();
  std::cout << w.summary() << '\n';
  return w.failures() == 0 ? 0 : 1;
}

}  // namespace pantry::cli
