#include "http_serve.h"

#include <algorithm>
#include <charconv>
#include <vector>

namespace pantry::registry::detail {
namespace {
// Body copies for cache misses go through buffers of this size.
constexpr std::size_t kCopyBuffer = 256 * 1024;
}  // namespace

std::string path_of(std::string_view target) {
  return std::string(target.substr(0, target.find('?')));
}

std::optional<std::uint64_t> recorded_size(const cache::entry& e) {
  std::string_view s = e.attribute(kSizeAttribute);
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return n;
}

result<std::string> read_small_blob(cache::store& store, const cache::digest& id) {
  auto reader = store.open_blob(id);
  if (!reader) return reader.error();
  std::string text(static_cast<std::size_t>(reader->size()), '\0');
  auto n = reader->read(0, std::as_writable_bytes(std::span(text)));
  if (!n) return n.error();
  text.resize(*n);
  return text;
}

range_answer parse_range(std::string_view header, std::uint64_t size, byte_range& out) {
  if (header.empty() || !header.starts_with("bytes=")) return range_answer::whole;
  std::string_view spec = header.substr(6);
  if (spec.find(',') != std::string_view::npos) return range_answer::whole;  // multipart: whole
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) return range_answer::whole;
  auto num = [](std::string_view s, std::uint64_t& v) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
  };
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::string_view left = spec.substr(0, dash);
  std::string_view right = spec.substr(dash + 1);
  if (left.empty()) {
    if (!num(right, b) || b == 0) return range_answer::unsatisfiable;
    b = std::min(b, size);
    out = {size - b, b};
    return size == 0 ? range_answer::unsatisfiable : range_answer::partial;
  }
  if (!num(left, a)) return range_answer::whole;
  if (a >= size) return range_answer::unsatisfiable;
  std::uint64_t last = size - 1;
  if (!right.empty()) {
    if (!num(right, b) || b < a) return range_answer::whole;
    last = std::min(b, last);
  }
  out = {a, last - a + 1};
  return range_answer::partial;
}

bool etag_matches(const exchange& ex, std::string_view etag) {
  for (auto v : ex.header_values(http::field::if_none_match)) {
    if (v.find(etag) != std::string_view::npos || v == "*") return true;
  }
  return false;
}

// RFC 9110's IMF-fixdate: "Thu, 26 Nov 2026 16:09:00 GMT".
std::string http_date(clock::time_point t) {
  std::time_t tt = clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

std::optional<std::time_t> parse_http_date(std::string_view text) {
  std::string s(text);
  std::tm tm{};
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return timegm(&tm);
}

// Whether a cached representation with `etag`, stored at `modified`, is what the client has:
// If-None-Match decides when present; otherwise If-Modified-Since not before `modified` (RFC
// 9110 section 13.2.2). The 304 then carries the ETag.
bool not_modified(const exchange& ex, std::string_view etag, clock::time_point modified) {
  if (!ex.header_values(http::field::if_none_match).empty()) return etag_matches(ex, etag);
  auto since = ex.header_values(http::field::if_modified_since);
  if (since.empty()) return false;
  auto t = parse_http_date(since.back());
  return t && clock::to_time_t(modified) <= *t;
}

asio::awaitable<void> stream_flight(exchange& ex, proxy::flight& fl, cache::store& store,
                                    const cache::digest& id, const std::string& content_type,
                                    const http::fields& extra, const error_responder& on_error) {
  auto head = co_await fl.wait_head();
  if (!head) {
    bool gone = head.error().is(errc::not_found);
    co_await on_error(ex, gone ? http::status::not_found : http::status::bad_gateway,
                      head.error().message);
    co_return;
  }
  http::response_header<> h;
  h.version(11);
  h.result(http::status::ok);
  h.set(http::field::content_type, content_type);
  for (const auto& f : extra)
    h.set(f.name_string(), f.value());
  if (co_await ex.begin(std::move(h), head->length)) co_return;
  if (ex.request().method() == http::verb::head) {
    co_await ex.end();
    co_return;
  }
  std::vector<std::byte> buf(kCopyBuffer);
  std::uint64_t offset = 0;
  for (;;) {
    if (fl.verified()) {
      // The rest is a cache hit now: straight from the map, as for any hit.
      if (auto reader = store.open_blob(id); reader && offset <= reader->size()) {
        if (co_await ex.write_blob(*reader, offset, reader->size() - offset)) co_return;
        break;
      }
    }
    // Straight from the flight's memory where the bytes still are: no copy of our own.
    auto got = co_await fl.read_some(offset, buf);
    if (!got) {
      ex.reset();
      co_return;
    }
    if (got->bytes.empty()) break;
    if (co_await ex.write(got->bytes)) co_return;
    offset += got->bytes.size();
  }
  co_await ex.end();
}

asio::awaitable<void> serve_blob(exchange& ex, cache::blob_reader& reader,
                                 const std::string& content_type, const http::fields& extra) {
  const auto size = reader.size();
  const std::string etag = "\"" + reader.info().id.hex() + "\"";
  http::response_header<> h;
  h.version(11);
  h.set(http::field::content_type, content_type);
  h.set(http::field::etag, etag);
  h.set(http::field::last_modified, http_date(reader.info().created));
  h.set(http::field::accept_ranges, "bytes");
  h.set(http::field::cache_control, "max-age=31536000, immutable");
  for (const auto& f : extra)
    h.set(f.name_string(), f.value());
  if (not_modified(ex, etag, reader.info().created)) {
    h.result(http::status::not_modified);
    co_await ex.begin(std::move(h), 0);
    co_await ex.end();
    co_return;
  }
  byte_range range;
  std::string_view range_header;
  if (auto it = ex.request().find(http::field::range); it != ex.request().end()) {
    range_header = it->value();
  }
  switch (parse_range(range_header, size, range)) {
    case range_answer::unsatisfiable:
      h.result(http::status::range_not_satisfiable);
      h.set(http::field::content_range, "bytes */" + std::to_string(size));
      co_await ex.begin(std::move(h), 0);
      co_await ex.end();
      co_return;
    case range_answer::partial:
      h.result(http::status::partial_content);
      h.set(http::field::content_range, "bytes " + std::to_string(range.first) + "-" +
                                            std::to_string(range.first + range.length - 1) + "/" +
                                            std::to_string(size));
      break;
    case range_answer::whole:
      h.result(http::status::ok);
      range = {0, size};
      break;
  }
  if (co_await ex.begin(std::move(h), range.length)) co_return;
  if (ex.request().method() != http::verb::head) {
    if (co_await ex.write_blob(reader, range.first, range.length)) co_return;
  }
  co_await ex.end();
}

}  // namespace pantry::registry::detail
