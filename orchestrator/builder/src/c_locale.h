#pragma once

// Pins the calling thread to the C locale while it lives. libarchive converts names through the
// current locale (nl_langinfo), writing and reading different bytes for the same name under a UTF-8
// locale and under C; under C every non-ASCII name passes as raw bytes, the same on every machine.
// Private to pantry_builder.

#include <locale.h>

namespace pantry::orchestrator::builder::detail {

class c_locale_scope {
 public:
  c_locale_scope() : locale_(::newlocale(LC_ALL_MASK, "C", locale_t(0))) {
    if (locale_ != locale_t(0)) previous_ = ::uselocale(locale_);
  }
  ~c_locale_scope() {
    if (locale_ == locale_t(0)) return;
    ::uselocale(previous_);
    ::freelocale(locale_);
  }
  c_locale_scope(const c_locale_scope&) = delete;
  c_locale_scope& operator=(const c_locale_scope&) = delete;

  bool ok() const noexcept { return locale_ != locale_t(0); }

 private:
  locale_t locale_;
  locale_t previous_ = locale_t(0);
};

}  // namespace pantry::orchestrator::builder::detail
