#pragma once

// A step's output as log lines: bytes arrive in chunks of any size from a pipe; the masker
// replaces declared secret values (also when a value is split across chunks), the splitter cuts
// the masked stream into timestamped lines. Use them in that order, so that a secret is masked
// whatever lines it spans. Pure: the caller reads the pipe and supplies the clock.
//
// Both keep exactly what they are given: concatenating the masker's outputs gives the input with
// every secret occurrence replaced by kMask, and concatenating each line's text and terminator()
// gives the splitter's input back. Neither class is thread-safe; one instance per stream.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner {

using log_clock = std::chrono::system_clock;

// How a line ended.
enum class line_end {
  newline,  // "\n"
  crlf,     // "\r\n" (the '\r' is not part of the text)
  cut,      // the line reached the length limit; its rest follows as the next line(s)
  eof,      // the output ended without a terminator
};

// The bytes a line's ending stood for: "\n", "\r\n", or "" for cut and eof.
std::string_view terminator(line_end end) noexcept;

struct log_line {
  log_clock::time_point time;  // the time passed with the chunk in which this line (or piece) began
  std::string text;            // without its terminator
  line_end end = line_end::newline;
};

// A line longer than this is cut into pieces of at most this many bytes.
inline constexpr std::size_t kDefaultMaxLine = 16384;

class line_splitter {
 public:
  // `max_line` (at least 4 bytes) bounds every line's text. A cut never splits a UTF-8 sequence
  // (it moves back to the sequence's start) nor a "\r\n" pair.
  explicit line_splitter(std::size_t max_line = kDefaultMaxLine);

  // Appends to `out` every line that `chunk` completes, in order. `now` is when the chunk arrived.
  void feed(std::string_view chunk, log_clock::time_point now, std::vector<log_line>& out);

  // The output ended: appends the unterminated rest, if any, as a line ending in eof (a lone
  // '\r' stays in its text; a rest over the limit is cut first). The splitter is then empty and
  // may be fed again.
  void finish(std::vector<log_line>& out);

  // Bytes held for a line not yet complete.
  std::size_t pending() const noexcept { return partial_.size(); }

 private:
  std::size_t max_line_;
  std::string partial_;
  log_clock::time_point started_{};
};

// What every occurrence of a secret becomes.
inline constexpr std::string_view kMask = "****";
// Values shorter than this are not masked: a secret "1" would blank out every digit one of the
// log, and masking it would hide it no better than the log's other ones. The runner warns about
// such secrets (secret_masker::too_short()) instead.
inline constexpr std::size_t kMinSecretLength = 4;

class secret_masker {
 public:
  // `secrets` are values, not names. A value ending in "\n" or "\r\n" (a secret file usually
  // does) is also masked without it, since programs seldom print the newline. Empty and
  // duplicate values are dropped.
  explicit secret_masker(const std::vector<std::string>& secrets,
                         std::size_t min_length = kMinSecretLength);

  // The masked text that is certain so far. Held back are only the bytes at the end that might
  // still begin a secret (at most the longest secret's length less one), so a line that cannot
  // hold one is never delayed.
  std::string feed(std::string_view chunk);
  // The stream ended: the held bytes, masked where they hold a whole secret.
  std::string finish();

  // `text` masked in one go, as feed() and finish() would mask it in any chunks.
  std::string mask(std::string_view text) const;

  // Indices (in the constructor's `secrets`) of the non-empty values too short to be masked.
  const std::vector<std::size_t>& too_short() const noexcept { return too_short_; }
  // Bytes held back now.
  std::size_t pending() const noexcept { return held_.size(); }

 private:
  // Masks `text` from its start; stops at the first position where a secret may begin but the
  // text ends first, unless `at_end`. Returns how many bytes of `text` it consumed.
  std::size_t scan(std::string_view text, bool at_end, std::string& out) const;

  std::vector<std::string> secrets_;  // longest first
  bool first_byte_[256] = {};         // whether some secret starts with that byte
  std::vector<std::size_t> too_short_;
  std::string held_;
};

}  // namespace pantry::orchestrator::runner
