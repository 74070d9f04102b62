#pragma once

// pantry's error values. Libraries return `pantry::result<T>`; nothing on a request path throws.
// An `error` carries a code (for programs to branch on) and a message for people that names the
// object, the bad value and what to do, e.g.
//   "cache: put sha256:ab12… failed: MDB_MAP_FULL (map size 8 GiB)".

#include <boost/assert/source_location.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <system_error>
#include <utility>

namespace pantry {

enum class errc {
  ok = 0,
  invalid_argument = 1,  // a value given by a user or a peer is malformed
  not_found,             // the object does not exist (or is not visible yet)
  already_exists,
  corrupt,          // stored bytes do not match their digest or record
  digest_mismatch,  // received bytes do not match the digest they were promised under
  size_mismatch,
  map_full,        // the LMDB map is full (MDB_MAP_FULL)
  no_space,        // the disk is full (ENOSPC)
  quota_exceeded,  // the cache quota cannot make room (too small, or all blobs in use)
  io_error,
  locked,         // another process holds the data dir's lock
  storage_error,  // any other storage engine failure
  config_error,
  cancelled,
  conflict,  // the object is not in the state the call needs (a runner's lease on a job it lost)
};

// The category of `errc`: its name is "pantry".
const boost::system::error_category& category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), category()};
}

// An error code plus the message a person reads.
struct error {
  boost::system::error_code code;
  std::string message;

  error() = default;
  error(errc e, std::string msg) : code(make_error_code(e)), message(std::move(msg)) {}
  error(boost::system::error_code ec, std::string msg) : code(ec), message(std::move(msg)) {}

  // True iff this error has code `e`.
  bool is(errc e) const noexcept { return code == make_error_code(e); }
};

// Thrown only where a caller asks `result::value()` of a failed result (start-up code).
class exception : public std::runtime_error {
 public:
  explicit exception(error e) : std::runtime_error(e.message), error_(std::move(e)) {}
  const pantry::error& err() const noexcept { return error_; }

 private:
  pantry::error error_;
};

[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location& loc);

template <class T>
using result = boost::system::result<T, error>;

}  // namespace pantry

namespace boost::system {
template <>
struct is_error_code_enum<pantry::errc> : std::true_type {};
}  // namespace boost::system
