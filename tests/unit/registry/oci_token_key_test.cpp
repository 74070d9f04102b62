#include "pantry/registry/oci/service.h"

#include "../temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <string>

namespace pantry::registry::oci {
namespace {

using ::testing::HasSubstr;

class OciTokenKeyTest : public test_util::temp_dir_test {};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(OciTokenKeyTest, MadeOnceOwnerOnlyAndKept) {
  const auto mine = dir_ / "a";
  const auto other = dir_ / "b";
  std::filesystem::create_directories(mine);
  std::filesystem::create_directories(other);
  auto first = data_dir_token_key(mine);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->size(), 64u) << *first;
  const auto file = mine / "registry-token.key";
  EXPECT_EQ(read_file(file), *first + "\n");
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << std::oct << (st.st_mode & 0777);

  auto again = data_dir_token_key(mine);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, *first);

  auto elsewhere = data_dir_token_key(other);
  ASSERT_TRUE(elsewhere) << elsewhere.error().message;
  EXPECT_NE(*elsewhere, *first);
  // Nothing but the key is left behind.
  std::size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(mine)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

TEST_F(OciTokenKeyTest, ABrokenFileIsAnErrorThatSaysWhatToDo) {
  const auto file = dir_ / "registry-token.key";
  std::ofstream(file) << "not a key\n";
  auto key = data_dir_token_key(dir_);
  ASSERT_FALSE(key);
  EXPECT_THAT(key.error().message, HasSubstr(file.string()));
  EXPECT_THAT(key.error().message, HasSubstr("delete it"));
  EXPECT_EQ(read_file(file), "not a key\n") << "the file was changed";
}

TEST_F(OciTokenKeyTest, AnUnwritableDataDirIsAnErrorNamingIt) {
  auto key = data_dir_token_key("/nonexistent-pantry-data-dir");
  ASSERT_FALSE(key);
  EXPECT_THAT(key.error().message, HasSubstr("/nonexistent-pantry-data-dir"));
}

}  // namespace
}  // namespace pantry::registry::oci
