#pragma once

// Captures spdlog's default logger for a test: while a log_capture lives, every line logged
// through the default logger, and through loggers cloned from it meanwhile (the server's access
// log), is kept with its level. The previous default logger and level come back when it goes.

#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace pantry::test_util {

struct logged_line {
  spdlog::level::level_enum level;
  std::string text;  // the message, without time and level
};

class log_capture {
 public:
  log_capture() : previous_(spdlog::default_logger()), level_(spdlog::get_level()) {
    auto logger = std::make_shared<spdlog::logger>("", sink_);
    logger->set_level(level_);
    spdlog::set_default_logger(std::move(logger));
  }
  ~log_capture() {
    spdlog::set_default_logger(previous_);
    spdlog::set_level(level_);
  }
  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;

  // The lines so far, in the order they were logged.
  std::vector<logged_line> lines() const { return sink_->lines(); }

  // How many lines so far contain `text`.
  std::size_t count(std::string_view text) const {
    std::size_t n = 0;
    for (const auto& l : lines())
      n += l.text.find(text) != std::string::npos ? 1 : 0;
    return n;
  }

  // Waits until a line contains `text` (a server logs a request's access line after it sent the
  // response); false after 30 s, so that a broken server fails the test instead of hanging it.
  bool wait_for(std::string_view text) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (count(text) == 0) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  // The lines so far, one per line as "[level] text", for failure messages.
  std::string dump() const {
    std::string out;
    for (const auto& l : lines()) {
      const auto name = spdlog::level::to_string_view(l.level);
      out += "[" + std::string(name.data(), name.size()) + "] " + l.text + "\n";
    }
    return out;
  }

 private:
  class sink final : public spdlog::sinks::base_sink<std::mutex> {
   public:
    std::vector<logged_line> lines() {
      std::lock_guard lock(mutex_);
      return lines_;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& m) override {
      lines_.push_back({m.level, std::string(m.payload.data(), m.payload.size())});
    }
    void flush_() override {}

   private:
    std::vector<logged_line> lines_;  // guarded by mutex_
  };

  const std::shared_ptr<spdlog::logger> previous_;
  const spdlog::level::level_enum level_;
  const std::shared_ptr<sink> sink_ = std::make_shared<sink>();
};

}  // namespace pantry::test_util
