#pragma once

// A test fixture with a real cache store in a temp dir of its own, for the parts of the
// coordinator that keep their records there.

#include "pantry/cache/store.h"
#include "unit/cache/test_util.h"
#include "unit/temp_dir.h"

#include <gtest/gtest.h>

#include <memory>

namespace pantry::orchestrator::coordinator {

class cache_store_test : public test_util::temp_dir_test {
 protected:
  void SetUp() override {
    temp_dir_test::SetUp();
    reopen_cache();
  }

  // Closes the store (if open) and opens it again on the same dir, as a restart would.
  void reopen_cache() {
    cache_.reset();
    cache::options o;
    o.data_dir = dir_ / "cache";
    o.durable = false;
    auto s = cache::store::open(o);
    ASSERT_TRUE(cache::testing_util::ok(s));
    cache_ = *s;
  }

  std::shared_ptr<cache::store> cache_;
};

}  // namespace pantry::orchestrator::coordinator
