#include "pantry/orchestrator/coordinator/pytest_plugin.h"

#include "pantry/orchestrator/coordinator/test_order.h"
#include "unit/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

namespace pantry::orchestrator::coordinator {
namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The output of `command` (run by sh), with its exit status.
std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::array<char, 4096> buffer{};
  while (std::size_t n = std::fread(buffer.data(), 1, buffer.size(), p))
    out.append(buffer.data(), n);
  return {::pclose(p), out};
}

class PytestPluginTest : public test_util::temp_dir_test {};

TEST_F(PytestPluginTest, TheCompiledInPluginIsTheSourceFile) {
  const std::string file = read_file(PANTRY_PYTEST_PLUGIN);
  ASSERT_FALSE(file.empty()) << PANTRY_PYTEST_PLUGIN;
  EXPECT_EQ(pytest_plugin_source(), file)
      << "the build embeds the plugin at configure time: re-run cmake";
}

TEST_F(PytestPluginTest, WrittenPluginIsReadOnlyAndImportsAndHashesAsPantryDoes) {
  ASSERT_TRUE(write_pytest_plugin(dir_));
  ASSERT_TRUE(write_pytest_plugin(dir_)) << "writing again replaces the read-only file";
  const auto path = dir_ / kPytestPluginFile;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  EXPECT_EQ(read_file(path), pytest_plugin_source());
  EXPECT_FALSE(std::filesystem::exists(dir_ / "pantry_pytest.py.tmp"));

  const std::string id = "tests/test_a.py::test_x[1-a b]";
  auto [status, out] =
      run("cd " + dir_.string() + " && PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=" + dir_.string() +
          " /usr/bin/python3 -c \"import " + std::string(kPytestPluginModule) +
          " as p; print(p.fnv1a64('" + id + "'), p.unknown_test_shard('" + id + "', 7))\"");
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out,
            std::to_string(fnv1a64(id)) + " " + std::to_string(unknown_test_shard(id, 7)) + "\n");
}

TEST_F(PytestPluginTest, WritingIntoAMissingDirectoryNamesThePath) {
  auto r = write_pytest_plugin(dir_ / "absent");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::io_error));
  EXPECT_THAT(
      r.error().message,
      ::testing::HasSubstr("creating " + (dir_ / "absent" / "pantry_pytest.py.tmp").string() +
                           " failed: No such file or directory"));
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
