#include "run.h"

#include "pantry/app/human.h"
#include "pantry/config/config.h"
#include "pantry/proxy/client.h"
#include "session.h"
#include "signals.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace pantry::cli {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace runner = orchestrator::runner;

constexpr int kExitPantry = 125;
constexpr int kExitCannotRun = 126;
constexpr int kExitNotFound = 127;
constexpr int kExitCancelled = 130;
constexpr int kExitOom = 137;
constexpr int kExitTimeout = 124;

std::string format_time(std::int64_t micros) {
  std::time_t secs = static_cast<std::time_t>(micros / 1'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%06lldZ ", buf, static_cast<long long>(micros % 1'000'000));
  return out;
}

// What came back: the step's result, or pantry's error.
struct finished {
  std::optional<json::object> result;
  std::string error;
};

class printer {
 public:
  explicit printer(bool timestamps) : timestamps_(timestamps) {}

  // One event line of the stream; returns the end when it is one.
  std::optional<finished> event(std::string_view text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) {
      return finished{std::nullopt,
                      "pantry sent an event that is not JSON: " + std::string(text.substr(0, 200))};
    }
    auto& o = v.get_object();
    auto type = o.if_contains("type");
    std::string_view t = type && type->is_string() ? std::string_view(type->get_string()) : "";
    if (t == "keepalive") return std::nullopt;
    if (t == "result") return finished{std::move(o), ""};
    if (t == "error") {
      auto m = o.if_contains("message");
      return finished{std::nullopt, m && m->is_string() ? std::string(m->get_string())
                                                        : std::string("unknown error")};
    }
    if (t != "line" && t != "report") return std::nullopt;  // a newer server's event
    std::string line;
    if (timestamps_) {
      auto time = o.if_contains("time");
      if (time && time->is_int64()) line = format_time(time->get_int64());
    }
    auto body = o.if_contains("text");
    if (body && body->is_string()) line += std::string_view(body->get_string());
    auto end = o.if_contains("end");
    std::string_view e = end && end->is_string() ? std::string_view(end->get_string()) : "";
    if (e == "crlf") {
      line += "\r\n";
    } else if (e != "cut" && e != "eof") {
      line += "\n";
    }
    auto stream = o.if_contains("stream");
    bool to_err = t == "report" || (stream && stream->is_string() &&
                                    std::string_view(stream->get_string()) == "err");
    std::FILE* f = to_err ? stderr : stdout;
    std::fwrite(line.data(), 1, line.size(), f);
    return std::nullopt;
  }

  void flush() {
    std::fflush(stdout);
    std::fflush(stderr);
  }

 private:
  bool timestamps_;
};

asio::awaitable<finished> exchange(std::shared_ptr<proxy::client> client,
                                   const app::control_endpoint& ep, std::string body,
                                   printer& out) {
  proxy::request req;
  req.method = http::verb::post;
  req.url = ep.url + "/api/v1/runner/steps";
  req.headers.set(http::field::authorization, "Bearer " + ep.token);
  req.headers.set(http::field::content_type, "application/json");
  req.body = std::move(body);
  req.follow_redirects = false;
  auto sent = co_await client->send(std::move(req));
  if (!sent) co_return finished{std::nullopt, sent.error().message};
  proxy::response res = std::move(*sent);
  if (res.status() != 200) {
    auto text = co_await res.read_all(64 * 1024);
    std::string message = text ? *text : std::string();
    while (!message.empty() && message.back() == '\n')
      message.pop_back();
    co_return finished{std::nullopt, "pantry answered " + std::to_string(res.status()) +
                                         (message.empty() ? "" : ": " + message)};
  }
  std::string pending;
  std::vector<std::byte> buf(64 * 1024);
  for (;;) {
    auto n = co_await res.read_some(buf);
    if (!n) co_return finished{std::nullopt, "the step's stream broke: " + n.error().message};
    if (*n == 0) break;
    pending.append(reinterpret_cast<const char*>(buf.data()), *n);
    std::size_t start = 0;
    for (;;) {
      auto nl = pending.find('\n', start);
      if (nl == std::string::npos) break;
      auto done = out.event(std::string_view(pending).substr(start, nl - start));
      start = nl + 1;
      if (done) {
        out.flush();
        co_return std::move(*done);
      }
    }
    pending.erase(0, start);
    out.flush();
  }
  co_return finished{std::nullopt, "the step's stream ended without a result"};
}

int exit_status(const json::object& r) {
  auto flag = [&](std::string_view k) {
    auto v = r.if_contains(k);
    return v && v->is_bool() && v->get_bool();
  };
  auto num = [&](std::string_view k) -> std::int64_t {
    auto v = r.if_contains(k);
    return v && v->is_int64() ? v->get_int64() : -1;
  };
  if (flag("oom_killed")) return kExitOom;
  if (flag("timed_out")) return kExitTimeout;
  if (flag("cancelled")) return kExitCancelled;
  if (auto e = r.if_contains("runc_error"); e && e->is_string()) {
    std::string_view m = e->get_string();
    return m.find("not found") != std::string_view::npos ||
                   m.find("no such file") != std::string_view::npos
               ? kExitNotFound
               : kExitCannotRun;
  }
  auto code = num("exit_code");
  return code < 0 ? kExitPantry : static_cast<int>(code);
}

std::string summary(const json::object& r) {
  std::ostringstream s;
  auto image = r.if_contains("image");
  s << "pantry: " << (image && image->is_string() ? std::string_view(image->get_string()) : "")
    << ": ";
  auto flag = [&](std::string_view k) {
    auto v = r.if_contains(k);
    return v && v->is_bool() && v->get_bool();
  };
  if (auto e = r.if_contains("runc_error"); e && e->is_string()) {
    s << "could not start: " << std::string_view(e->get_string());
  } else if (flag("oom_killed")) {
    s << "OOM-killed (exit code " << r.at("exit_code").as_int64() << ")";
  } else if (flag("timed_out")) {
    s << "timed out";
  } else if (flag("cancelled")) {
    s << "cancelled";
  } else {
    s << "exit code " << r.at("exit_code").as_int64();
  }
  if (auto w = r.if_contains("wall_seconds"); w && w->is_number()) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3f", w->to_number<double>());
    s << " in " << b << " s";
  }
  if (auto m = r.if_contains("peak_memory_bytes"); m && m->is_number()) {
    s << ", peak memory " << app::human_bytes(m->to_number<std::uint64_t>());
  }
  if (auto c = r.if_contains("cpu_seconds"); c && c->is_number()) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", c->to_number<double>());
    s << ", " << b << " CPU-seconds";
  }
  if (flag("pids_limit_hit")) s << ", hit the pids limit";
  if (auto notes = r.if_contains("notes"); notes && notes->is_array()) {
    for (const auto& n : notes->get_array()) {
      if (n.is_string()) s << "\npantry: note: " << std::string_view(n.get_string());
    }
  }
  return s.str();
}

}  // namespace

int run_step_command(const run_options& opt) {
  config::config cfg = config::defaults();
  if (opt.config_file) {
    auto loaded = config::load_file(*opt.config_file);
    if (!loaded) {
      std::cerr << "pantry: " << loaded.error().message << '\n';
      return kExitPantry;
    }
    cfg = std::move(*loaded);
  }
  if (opt.data_dir) cfg.data_dir = *opt.data_dir;
  if (!opt.verbose) spdlog::set_level(spdlog::level::warn);

  const sigset_t signals = block_stop_signals();  // before the session's threads start
  auto s = session::open(cfg);
  if (!s) {
    std::cerr << "pantry: " << s.error().message << '\n';
    return kExitPantry;
  }
  asio::io_context ioc;
  proxy::client_options co;
  co.use_env_proxy = false;
  co.user_agent = "pantry-run/" PANTRY_VERSION;
  // A step may print nothing for a long time; the server sends keep-alive events meanwhile.
  co.idle_timeout = std::chrono::minutes(2);
  auto strand = asio::make_strand(ioc);
  auto client = proxy::client::create(strand, co);
  printer out(opt.timestamps);
  std::optional<finished> done;
  std::atomic<bool> interrupted{false};
  asio::co_spawn(
      strand,
      exchange(client, (*s)->endpoint(), json::serialize(runner::to_json(opt.request)), out),
      [&done](std::exception_ptr e, finished f) {
        if (e) {
          f.error = "bug: an exception escaped the step's client";
        }
        done = std::move(f);
      });
  {
    // ^C: dropping the connection cancels the step on the server (within its keep-alive
    // interval); an in-process pantry cancels it at once when the session stops.
    signal_waiter waiter(signals, [&](std::string_view) {
      interrupted = true;
      ioc.stop();
    });
    ioc.run();
  }
  client.reset();
  if (interrupted) {
    std::cerr << "pantry: interrupted; the step is cancelled\n";
    return kExitCancelled;
  }
  if (!done) return kExitPantry;
  if (!done->result) {
    std::cerr << "pantry: " << done->error << '\n';
    return kExitPantry;
  }
  std::cerr << summary(*done->result) << '\n';
  return exit_status(*done->result);
}

}  // namespace pantry::cli
