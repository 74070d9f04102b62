#pragma once

// Reading typed members out of untrusted JSON with errors that name the member (the seccomp
// profile and image config readers, the coordinator's tickets and records), and writing string
// arrays (the OCI documents).

#include "pantry/error.h"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner::detail {

inline boost::json::array to_array(const std::vector<std::string>& v) {
  boost::json::array a;
  a.reserve(v.size());
  for (const auto& s : v)
    a.emplace_back(s);
  return a;
}

// `what` is the member's path for messages ("syscalls[3].names"); `prefix` names the document
// ("seccomp profile"). Each reader returns the default value when the member is absent or null.
class json_reader {
 public:
  explicit json_reader(std::string prefix) : prefix_(std::move(prefix)) {}

  error fail(std::string_view what, std::string_view why) const {
    return error(errc::invalid_argument,
                 prefix_ + ": " + std::string(what) + ": " + std::string(why));
  }

  // `text` as a JSON object.
  result<boost::json::object> parse_object(std::string_view text) const {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(text, ec);
    if (ec) return fail("(document)", "not JSON: " + ec.message());
    if (!v.is_object()) return fail("(document)", "expected a JSON object");
    return std::move(v.get_object());
  }

  result<std::string> string_at(const boost::json::object& o, std::string_view key,
                                std::string_view what) const {
    const auto* v = o.if_contains(key);
    if (v == nullptr || v->is_null()) return std::string();
    if (!v->is_string()) return fail(what, "expected a string");
    return std::string(v->get_string());
  }

  result<std::vector<std::string>> strings_at(const boost::json::object& o, std::string_view key,
                                              std::string_view what) const {
    std::vector<std::string> out;
    const auto* v = o.if_contains(key);
    if (v == nullptr || v->is_null()) return out;
    if (!v->is_array()) return fail(what, "expected an array of strings");
    for (const auto& e : v->get_array()) {
      if (!e.is_string()) return fail(what, "expected an array of strings");
      out.emplace_back(e.get_string());
    }
    return out;
  }

  // A non-negative integer no larger than `max`.
  result<std::optional<std::uint64_t>> uint_at(const boost::json::object& o, std::string_view key,
                                               std::string_view what,
                                               std::uint64_t max = UINT64_MAX) const {
    const auto* v = o.if_contains(key);
    if (v == nullptr || v->is_null()) return std::optional<std::uint64_t>();
    std::uint64_t n = 0;
    if (v->is_uint64()) {
      n = v->get_uint64();
    } else if (v->is_int64() && v->get_int64() >= 0) {
      n = static_cast<std::uint64_t>(v->get_int64());
    } else {
      return fail(what, "expected a non-negative integer");
    }
    if (n > max) return fail(what, "value " + std::to_string(n) + " is out of range");
    return std::optional<std::uint64_t>(n);
  }

  // Reads the member into `into` (left as is when absent or null); the error when it has another
  // type. Lets a reader of many members say each in one line.
  std::optional<error> read(const boost::json::object& o, std::string_view key,
                            std::string_view what, std::string& into) const {
    auto v = string_at(o, key, what);
    if (!v) return v.error();
    if (o.if_contains(key) != nullptr) into = std::move(*v);
    return std::nullopt;
  }
  std::optional<error> read(const boost::json::object& o, std::string_view key,
                            std::string_view what, std::vector<std::string>& into) const {
    auto v = strings_at(o, key, what);
    if (!v) return v.error();
    if (o.if_contains(key) != nullptr) into = std::move(*v);
    return std::nullopt;
  }

  // The member as an object; nullptr when absent or null, an error when another type.
  result<const boost::json::object*> object_at(const boost::json::object& o, std::string_view key,
                                               std::string_view what) const {
    const auto* v = o.if_contains(key);
    if (v == nullptr || v->is_null()) return static_cast<const boost::json::object*>(nullptr);
    if (!v->is_object()) return fail(what, "expected an object");
    return &v->get_object();
  }

 private:
  std::string prefix_;
};

}  // namespace pantry::orchestrator::runner::detail
