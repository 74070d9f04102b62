#pragma once

// multipart/form-data (RFC 7578, the framing of RFC 2046 section 5.1), parsed as an upload's body
// arrives: a push parser fed the body in pieces of any size that hands each part's header and
// bytes to a handler, so that a file part can go to disk as it arrives and is never held whole
// in memory. The legacy PyPI upload API (twine, flit, `poetry publish`) sends its form this way.
//
// Pure: no I/O, no exceptions (allocation failure aside).

#include "pantry/error.h"

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace pantry::registry::pypi {

// The longest part header block accepted (all header lines of one part together).
inline constexpr std::size_t kMaxPartHeader = 16 * 1024;

// What a part's header says, as far as form-data needs it.
struct form_part {
  std::string name;                     // Content-Disposition's `name`
  std::optional<std::string> filename;  // its `filename`: the part is a file
  std::string content_type;             // the part's Content-Type, "" when it has none

  friend bool operator==(const form_part&, const form_part&) = default;
};

// The boundary of a `multipart/form-data; boundary=...` Content-Type (quoted or not, parameters
// in any order, names in any case). Fails with errc::invalid_argument, naming the value, when the
// type is not multipart/form-data or the boundary is missing, empty, longer than 70 characters
// or has characters RFC 2046 does not allow.
result<std::string> multipart_boundary(std::string_view content_type);

// Parses a Content-Disposition value: `form-data; name="x"; filename="y"`. Parameter names in
// any case; values quoted (with backslash escapes) or tokens. Fails with errc::invalid_argument
// unless the type is form-data with a name.
result<form_part> parse_content_disposition(std::string_view value);

class multipart_parser {
 public:
  // Receives the parts in body order. Every call may fail, which stops the parse: feed() then
  // returns that error.
  class handler {
   public:
    virtual ~handler() = default;
    // A part starts.
    virtual result<void> part_begin(const form_part& part) = 0;
    // The next bytes of the current part's body (never empty).
    virtual result<void> part_data(std::span<const std::byte> bytes) = 0;
    // The current part ended.
    virtual result<void> part_end() = 0;
  };

  // `boundary` as multipart_boundary() returned it; `h` must outlive the parser.
  multipart_parser(std::string boundary, handler& h);

  // Parses the next bytes of the body. Fails with errc::invalid_argument (naming what is wrong)
  // on a malformed body: a part header over kMaxPartHeader, a header line without ':', a part
  // without a form-data Content-Disposition, a delimiter followed by anything but CRLF or "--";
  // or with the handler's error. After a failure every call fails the same way. Bytes after the
  // closing delimiter (the epilogue) are ignored. The parser holds back at most the boundary's
  // length plus a part header between calls.
  result<void> feed(std::span<const std::byte> bytes);

  // The body ended: fails with errc::invalid_argument unless the closing delimiter was seen.
  result<void> finish();

  // True once the closing delimiter was seen.
  bool done() const noexcept { return state_ == state::done; }

 private:
  enum class state { preamble, after_delimiter, header, body, done };
  result<void> run();
  result<void> fail(std::string message);

  std::string delimiter_;  // CRLF "--" boundary
  handler& handler_;
  std::string buffer_;  // bytes received and not yet parsed
  state state_ = state::preamble;
  std::optional<error> failed_;
};

}  // namespace pantry::registry::pypi
