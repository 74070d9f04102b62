#include "pantry/orchestrator/runner/log_lines.h"

#include <algorithm>

namespace pantry::orchestrator::runner {
namespace {

bool utf8_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// Where to cut `text` (longer than `max`): at `max`, moved back to the start of a UTF-8 sequence
// that would straddle it (a sequence is at most 4 bytes; invalid text is cut at `max`).
std::size_t cut_point(std::string_view text, std::size_t max) {
  std::size_t c = max;  // text[max] exists: text is longer than max
  while (c > max - 3 && utf8_continuation(text[c]))
    --c;
  return utf8_continuation(text[c]) ? max : c;
}

}  // namespace

std::string_view terminator(line_end end) noexcept {
  switch (end) {
    case line_end::newline:
      return "\n";
    case line_end::crlf:
      return "\r\n";
    case line_end::cut:
    case line_end::eof:
      return "";
  }
  return "";
}

line_splitter::line_splitter(std::size_t max_line)
    : max_line_(std::max<std::size_t>(max_line, 4)) {}

void line_splitter::feed(std::string_view chunk, log_clock::time_point now,
                         std::vector<log_line>& out) {
  if (chunk.empty()) return;
  if (partial_.empty()) started_ = now;
  std::size_t begin = 0;               // start of the line being assembled, in partial_
  std::size_t scan = partial_.size();  // partial_ before this chunk holds no '\n'
  partial_.append(chunk);
  while (true) {
    const std::size_t nl = partial_.find('\n', scan);
    while (true) {
      if (nl != std::string::npos) {
        const bool crlf = nl > begin && partial_[nl - 1] == '\r';
        const std::size_t text_end = crlf ? nl - 1 : nl;
        if (text_end - begin <= max_line_) {
          out.push_back({started_, partial_.substr(begin, text_end - begin),
                         crlf ? line_end::crlf : line_end::newline});
          begin = nl + 1;
          started_ = now;
          break;
        }
      } else {
        const std::size_t available = partial_.size() - begin;
        // A '\r' just past the limit may yet pair with a '\n' and end a line of exactly the limit.
        if (available <= max_line_ || (available == max_line_ + 1 && partial_.back() == '\r')) {
          break;
        }
      }
      const std::string_view rest = std::string_view(partial_).substr(begin);
      const std::size_t c = cut_point(rest, max_line_);
      out.push_back({started_, std::string(rest.substr(0, c)), line_end::cut});
      begin += c;
      started_ = now;
    }
    if (nl == std::string::npos) break;
    scan = nl + 1;
  }
  partial_.erase(0, begin);
}

void line_splitter::finish(std::vector<log_line>& out) {
  std::string_view rest = partial_;
  while (rest.size() > max_line_) {
    const std::size_t c = cut_point(rest, max_line_);
    out.push_back({started_, std::string(rest.substr(0, c)), line_end::cut});
    rest.remove_prefix(c);
  }
  if (!rest.empty()) out.push_back({started_, std::string(rest), line_end::eof});
  partial_.clear();
}

secret_masker::secret_masker(const std::vector<std::string>& secrets, std::size_t min_length) {
  auto add = [&](std::string_view value, std::size_t index) {
    if (value.empty()) return;
    if (value.size() < min_length) {
      if (std::find(too_short_.begin(), too_short_.end(), index) == too_short_.end()) {
        too_short_.push_back(index);
      }
      return;
    }
    if (std::find(secrets_.begin(), secrets_.end(), value) == secrets_.end()) {
      secrets_.emplace_back(value);
    }
  };
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    std::string_view v = secrets[i];
    add(v, i);
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r'))
      v.remove_suffix(1);
    if (v.size() != secrets[i].size()) add(v, i);
  }
  // Longest first: where secrets overlap, the longest one that matches is masked whole.
  std::stable_sort(secrets_.begin(), secrets_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const auto& s : secrets_)
    first_byte_[static_cast<unsigned char>(s.front())] = true;
}

std::size_t secret_masker::scan(std::string_view text, bool at_end, std::string& out) const {
  std::size_t i = 0;
  std::size_t copied = 0;  // text[copied, i) is clear and not yet in `out`
  while (i < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    const std::size_t available = text.size() - i;
    const std::string* match = nullptr;
    bool undecided = false;
    for (const auto& s : secrets_) {
      if (s.size() > available) {
        // A longer secret could still start here: wait for more bytes before deciding.
        if (!at_end && text.compare(i, available, s, 0, available) == 0) {
          undecided = true;
          break;
        }
        continue;
      }
      if (text.compare(i, s.size(), s) == 0) {
        match = &s;
        break;
      }
    }
    if (undecided) break;
    if (match == nullptr) {
      ++i;
      continue;
    }
    out.append(text.substr(copied, i - copied));
    out.append(kMask);
    i += match->size();
    copied = i;
  }
  out.append(text.substr(copied, i - copied));
  return i;
}

std::string secret_masker::feed(std::string_view chunk) {
  if (secrets_.empty()) return std::string(chunk);
  held_.append(chunk);
  std::string out;
  const std::size_t done = scan(held_, false, out);
  held_.erase(0, done);
  return out;
}

std::string secret_masker::finish() {
  std::string out;
  scan(held_, true, out);
  held_.clear();
  return out;
}

std::string secret_masker::mask(std::string_view text) const {
  std::string out;
  scan(text, true, out);
  return out;
}

}  // namespace pantry::orchestrator::runner
