#include "pantry/error.h"

#include <boost/throw_exception.hpp>

namespace pantry {
namespace {

class category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "pantry"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok:
        return "ok";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::not_found:
        return "not found";
      case errc::already_exists:
        return "already exists";
      case errc::corrupt:
        return "corrupt";
      case errc::digest_mismatch:
        return "digest mismatch";
      case errc::size_mismatch:
        return "size mismatch";
      case errc::map_full:
        return "LMDB map full";
      case errc::no_space:
        return "no space left on device";
      case errc::quota_exceeded:
        return "cache quota exceeded";
      case errc::io_error:
        return "I/O error";
      case errc::locked:
        return "data dir locked by another process";
      case errc::storage_error:
        return "storage error";
      case errc::config_error:
        return "configuration error";
      case errc::cancelled:
        return "cancelled";
      case errc::conflict:
        return "conflict";
    }
    return "unknown pantry error " + std::to_string(ev);
  }
};

}  // namespace

const boost::system::error_category& category() noexcept {
  static const category_impl instance;
  return instance;
}

void throw_exception_from_error(const error& e, const boost::source_location& loc) {
  boost::throw_exception(exception(e), loc);
}

}  // namespace pantry
