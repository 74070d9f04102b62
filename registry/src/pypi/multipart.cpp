#include "pantry/registry/pypi/multipart.h"

#include "pantry/text.h"

#include <algorithm>

namespace pantry::registry::pypi {

namespace {

// RFC 2046's bchars: what a boundary may hold (a space only inside, never last).
bool is_boundary_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("'()+_,-./:=? ").find(c) != std::string_view::npos;
}

// Splits "type; a=b; c=\"d;e\"" at the semicolons outside quotes.
struct parameter {
  std::string name;  // lowercased
  std::string value;
};

// Reads the parameters after the type of a header value (`rest` starts after the type). nullopt
// when a quoted value does not end.
std::optional<std::vector<parameter>> parse_parameters(std::string_view rest) {
  std::vector<parameter> out;
  std::size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && (rest[i] == ';' || is_ascii_space(rest[i])))
      ++i;
    if (i >= rest.size()) break;
    const std::size_t name_start = i;
    while (i < rest.size() && rest[i] != '=' && rest[i] != ';')
      ++i;
    parameter p;
    p.name = ascii_lower(trim_ascii_space(rest.substr(name_start, i - name_start)));
    if (i < rest.size() && rest[i] == '=') {
      ++i;
      while (i < rest.size() && is_ascii_space(rest[i]))
        ++i;
      if (i < rest.size() && rest[i] == '"') {
        ++i;
        bool closed = false;
        while (i < rest.size()) {
          char c = rest[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\' && i < rest.size()) c = rest[i++];
          p.value += c;
        }
        if (!closed) return std::nullopt;
      } else {
        const std::size_t start = i;
        while (i < rest.size() && rest[i] != ';')
          ++i;
        p.value = std::string(trim_ascii_space(rest.substr(start, i - start)));
      }
    }
    if (!p.name.empty()) out.push_back(std::move(p));
  }
  return out;
}

std::string_view as_text(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::span<const std::byte> as_bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace

result<std::string> multipart_boundary(std::string_view content_type) {
  const std::size_t semi = content_type.find(';');
  const std::string_view type = trim_ascii_space(content_type.substr(0, semi));
  if (!ascii_iequals(type, "multipart/form-data")) {
    return error(errc::invalid_argument,
                 "the upload's Content-Type is " + quote_for_message(content_type) +
                     ", not multipart/form-data; send the form as multipart/form-data");
  }
  auto params = parse_parameters(semi == std::string_view::npos ? std::string_view()
                                                                : content_type.substr(semi + 1));
  if (!params) {
    return error(errc::invalid_argument, "the Content-Type " + quote_for_message(content_type) +
                                             " has a quoted value that does not end");
  }
  for (const auto& p : *params) {
    if (p.name != "boundary") continue;
    if (p.value.empty() || p.value.size() > 70 || p.value.back() == ' ' ||
        !std::all_of(p.value.begin(), p.value.end(), is_boundary_char)) {
      return error(errc::invalid_argument, "the multipart boundary " + quote_for_message(p.value) +
                                               " is not 1 to 70 of the characters RFC 2046 allows");
    }
    return p.value;
  }
  return error(errc::invalid_argument, "the Content-Type " + quote_for_message(content_type) +
                                           " has no boundary parameter");
}

result<form_part> parse_content_disposition(std::string_view value) {
  const std::size_t semi = value.find(';');
  const std::string_view type = trim_ascii_space(value.substr(0, semi));
  if (!ascii_iequals(type, "form-data")) {
    return error(errc::invalid_argument,
                 "a part's Content-Disposition is " + quote_for_message(value) + ", not form-data");
  }
  auto params = parse_parameters(semi == std::string_view::npos ? std::string_view()
                                                                : value.substr(semi + 1));
  if (!params) {
    return error(errc::invalid_argument, "a part's Content-Disposition " +
                                             quote_for_message(value) +
                                             " has a quoted value that does not end");
  }
  form_part part;
  bool named = false;
  for (auto& p : *params) {
    if (p.name == "name" && !named) {
      part.name = std::move(p.value);
      named = true;
    } else if (p.name == "filename" && !part.filename) {
      part.filename = std::move(p.value);
    }
  }
  if (!named) {
    return error(errc::invalid_argument,
                 "a part's Content-Disposition " + quote_for_message(value) + " has no name");
  }
  return part;
}

multipart_parser::multipart_parser(std::string boundary, handler& h)
    : delimiter_("\r\n--" + boundary), handler_(h), buffer_("\r\n") {
  // The first delimiter has no CRLF before it when the body has no preamble: the CRLF put in
  // front of the body lets one search find every delimiter.
}

result<void> multipart_parser::fail(std::string message) {
  failed_ = error(errc::invalid_argument, std::move(message));
  return *failed_;
}

result<void> multipart_parser::feed(std::span<const std::byte> bytes) {
  if (failed_) return *failed_;
  if (state_ == state::done) return {};
  buffer_.append(as_text(bytes));
  auto r = run();
  if (!r && !failed_) failed_ = r.error();
  return r;
}

result<void> multipart_parser::finish() {
  if (failed_) return *failed_;
  if (state_ != state::done) {
    return fail("the form ended before its closing delimiter \"" + delimiter_.substr(2) +
                "--\"; the upload was cut off");
  }
  return {};
}

result<void> multipart_parser::run() {
  std::size_t at = 0;  // parsed bytes of buffer_
  // Keeps what is not parsed yet for the next feed.
  auto keep_rest = [&] { buffer_.erase(0, at); };
  for (;;) {
    const std::string_view rest = std::string_view(buffer_).substr(at);
    switch (state_) {
      case state::preamble: {
        const std::size_t d = rest.find(delimiter_);
        if (d == std::string_view::npos) {
          // Only a delimiter's beginning can be worth keeping.
          at += rest.size() >= delimiter_.size() ? rest.size() - (delimiter_.size() - 1) : 0;
          keep_rest();
          return {};
        }
        at += d + delimiter_.size();
        state_ = state::after_delimiter;
        break;
      }
      case state::after_delimiter: {
        if (rest.size() < 2) {
          keep_rest();
          return {};
        }
        if (rest.starts_with("--")) {
          state_ = state::done;
          buffer_.clear();
          return {};
        }
        // Transport padding (spaces and tabs) may come before the CRLF.
        std::size_t i = 0;
        while (i < rest.size() && (rest[i] == ' ' || rest[i] == '\t') && i < 256)
          ++i;
        if (i + 2 > rest.size() && i < 256) {
          keep_rest();
          return {};
        }
        if (rest.substr(i, 2) != "\r\n") {
          return fail("the delimiter \"" + delimiter_.substr(2) +
                      "\" is followed by neither CRLF nor \"--\"");
        }
        at += i + 2;
        state_ = state::header;
        break;
      }
      case state::header: {
        std::size_t end = 0;
        std::string_view block;
        if (rest.starts_with("\r\n")) {
          end = 2;  // no header lines at all
        } else {
          const std::size_t blank = rest.find("\r\n\r\n");
          if (blank == std::string_view::npos || blank + 4 > kMaxPartHeader) {
            if (rest.size() > kMaxPartHeader) {
              return fail("a part's header is over " + std::to_string(kMaxPartHeader) +
                          " bytes without an empty line ending it");
            }
            keep_rest();
            return {};
          }
          block = rest.substr(0, blank);
          end = blank + 4;
        }
        std::optional<form_part> part;
        std::string content_type;
        while (!block.empty()) {
          const std::size_t eol = block.find("\r\n");
          const std::string_view line = block.substr(0, eol);
          block = eol == std::string_view::npos ? std::string_view() : block.substr(eol + 2);
          const std::size_t colon = line.find(':');
          if (colon == std::string_view::npos) {
            return fail("a part's header line " + quote_for_message(line) + " has no ':'");
          }
          const std::string_view name = trim_ascii_space(line.substr(0, colon));
          const std::string_view value = trim_ascii_space(line.substr(colon + 1));
          if (ascii_iequals(name, "content-disposition")) {
            auto p = parse_content_disposition(value);
            if (!p) return fail(p.error().message);
            part = std::move(*p);
          } else if (ascii_iequals(name, "content-type")) {
            content_type = std::string(value);
          }
        }
        if (!part) return fail("a part has no Content-Disposition header naming its field");
        part->content_type = std::move(content_type);
        at += end;
        state_ = state::body;
        if (auto r = handler_.part_begin(*part); !r) return r;
        break;
      }
      case state::body: {
        const std::size_t d = rest.find(delimiter_);
        if (d == std::string_view::npos) {
          // Everything but what could be the start of a delimiter is the part's.
          const std::size_t safe =
              rest.size() >= delimiter_.size() ? rest.size() - (delimiter_.size() - 1) : 0;
          if (safe > 0) {
            if (auto r = handler_.part_data(as_bytes_of(rest.substr(0, safe))); !r) return r;
          }
          at += safe;
          keep_rest();
          return {};
        }
        if (d > 0) {
          if (auto r = handler_.part_data(as_bytes_of(rest.substr(0, d))); !r) return r;
        }
        at += d + delimiter_.size();
        state_ = state::after_delimiter;
        if (auto r = handler_.part_end(); !r) return r;
        break;
      }
      case state::done:
        buffer_.clear();
        return {};
    }
  }
}

}  // namespace pantry::registry::pypi
