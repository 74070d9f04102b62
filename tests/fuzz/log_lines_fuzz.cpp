// libFuzzer target for the runner's log framing: a step's output, split into chunks anywhere,
// goes through secret_masker and then line_splitter. Checked for every input:
// - the masker's streamed output equals its one-go mask() and a plain reference masking (at each
//   position the longest secret that matches is replaced by "****", else the byte is kept), so
//   nothing is lost, duplicated or left unmasked at a chunk boundary;
// - concatenating the lines' texts and terminators gives the masked stream back, every text is
//   within the limit and holds no '\n', and any chunking gives the same lines as one chunk.
//
// Input: byte 0 sets the line limit, byte 1 the number of secrets (0-3), then per secret a length
// byte and its bytes, then a byte seeding the chunk sizes; the rest is the output.

#include "pantry/orchestrator/runner/log_lines.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace runner = pantry::orchestrator::runner;

void check(bool ok, const char* what, std::size_t size) {
  if (ok) return;
  std::fprintf(stderr, "log_lines_fuzz: %s failed for input of %zu bytes\n", what, size);
  __builtin_trap();
}

// The secrets the masker promises to mask: each value, and the value without trailing CR/LF,
// when at least min_length bytes.
std::vector<std::string> masked_values(const std::vector<std::string>& secrets,
                                       std::size_t min_length) {
  std::vector<std::string> out;
  for (const auto& s : secrets) {
    std::string trimmed = s;
    while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r'))
      trimmed.pop_back();
    for (const auto& v : {s, trimmed}) {
      if (v.size() >= min_length) out.push_back(v);
    }
  }
  return out;
}

std::string reference_mask(std::string_view text, const std::vector<std::string>& values) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t longest = 0;
    for (const auto& v : values) {
      if (v.size() > longest && text.substr(i, v.size()) == v) longest = v.size();
    }
    if (longest > 0) {
      out += runner::kMask;
      i += longest;
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::vector<std::string_view> chunks_of(std::string_view text, std::uint32_t seed) {
  std::vector<std::string_view> out;
  std::uint32_t x = seed * 2654435761u + 1;
  while (!text.empty()) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    const std::size_t n = std::min<std::size_t>(text.size(), 1 + x % 17);
    out.push_back(text.substr(0, n));
    text.remove_prefix(n);
  }
  return out;
}

std::vector<runner::log_line> split(const std::vector<std::string_view>& chunks,
                                    std::size_t max_line) {
  runner::line_splitter s(max_line);
  std::vector<runner::log_line> lines;
  for (auto c : chunks)
    s.feed(c, runner::log_clock::time_point(), lines);
  s.finish(lines);
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto take = [&]() -> std::uint8_t {
    if (in.empty()) return 0;
    const auto b = static_cast<std::uint8_t>(in.front());
    in.remove_prefix(1);
    return b;
  };
  const std::size_t max_line = 4 + take() % 60;
  std::vector<std::string> secrets;
  for (int n = take() % 4; n > 0; --n) {
    const std::size_t len = take() % 12;
    secrets.emplace_back(in.substr(0, len));
    in.remove_prefix(std::min(len, in.size()));
  }
  const std::uint32_t seed = take();
  const std::string_view output = in;
  const std::size_t min_length = 2;

  runner::secret_masker masker(secrets, min_length);
  std::string streamed;
  for (auto c : chunks_of(output, seed))
    streamed += masker.feed(c);
  streamed += masker.finish();
  check(masker.pending() == 0, "nothing held after finish", size);
  const std::string expected = reference_mask(output, masked_values(secrets, min_length));
  check(streamed == expected, "streamed masking == reference masking", size);
  check(masker.mask(output) == expected, "mask() == reference masking", size);

  const auto lines = split(chunks_of(streamed, seed + 1), max_line);
  std::string joined;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    check(l.text.size() <= max_line, "line within the limit", size);
    check(l.text.find('\n') == std::string::npos, "no newline inside a line", size);
    check(l.end != runner::line_end::eof || i + 1 == lines.size(), "eof only last", size);
    joined += l.text;
    joined += runner::terminator(l.end);
  }
  check(joined == streamed, "lines concatenate to the masked output", size);
  const auto whole = split({std::string_view(streamed)}, max_line);
  bool same = whole.size() == lines.size();
  for (std::size_t i = 0; same && i < lines.size(); ++i)
    same = whole[i].text == lines[i].text && whole[i].end == lines[i].end;
  check(same, "any chunking gives the lines of one chunk", size);
  return 0;
}
