#include "pantry/registry/pypi/requirements.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace pantry::registry::pypi {
namespace {

// In-memory files for the includes; every read is recorded.
struct fake_files {
  std::map<std::string, std::string> files;
  std::vector<std::string> reads;

  file_reader reader() {
    return [this](const std::string& path) -> result<std::string> {
      reads.push_back(path);
      auto it = files.find(path);
      if (it == files.end()) return error(errc::not_found, path + ": No such file or directory");
      return it->second;
    };
  }
};

requirements parse(std::string_view text, fake_files* files = nullptr) {
  static fake_files none;
  return parse_requirements(text, "req.txt", (files != nullptr ? files : &none)->reader());
}

std::vector<std::string> pins_of(const requirements& r) {
  std::vector<std::string> out;
  for (const auto& p : r.pins)
    out.push_back(p.str() + " @" + p.where);
  return out;
}

constexpr std::string_view kHashA =
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr std::string_view kHashB =
    "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

// ---- parsing ----------------------------------------------------------------------------------

TEST(PypiRequirementsTest, ReadsPinsCommentsAndBlankLines) {
  auto r = parse(
      "# a comment\n"
      "\n"
      "Django==4.2.1\n"
      "   requests == 2.31.0   # trailing comment\n"
      "zope.interface===6.0\n"
      "\t\n");
  EXPECT_TRUE(r.errors.empty()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(pins_of(r),
            (std::vector<std::string>{"django==4.2.1 @req.txt:3", "requests==2.31.0 @req.txt:4",
                                      "zope-interface===6.0 @req.txt:5"}));
  EXPECT_TRUE(r.pins[2].arbitrary);
  EXPECT_EQ(r.pins[1].text, "requests == 2.31.0");
}

TEST(PypiRequirementsTest, KeepsExtrasAndMarkersWithoutEvaluatingThem) {
  auto r = parse(
      "Foo_Bar[security, socks]==1.0 ; python_version < \"3.8\" and sys_platform == \"win32\"\n"
      "baz[x]==2.0;os_name=='nt'\n"
      "qux (==3.0)\n");
  ASSERT_TRUE(r.errors.empty()) << ::testing::PrintToString(r.errors);
  ASSERT_EQ(r.pins.size(), 3u);
  EXPECT_EQ(r.pins[0].name, "foo-bar");
  EXPECT_EQ(r.pins[0].version, "1.0");
  EXPECT_EQ(r.pins[0].extras, (std::vector<std::string>{"security", "socks"}));
  EXPECT_EQ(r.pins[0].marker, "python_version < \"3.8\" and sys_platform == \"win32\"");
  EXPECT_EQ(r.pins[1].str(), "baz==2.0");
  EXPECT_EQ(r.pins[1].marker, "os_name=='nt'");
  EXPECT_EQ(r.pins[2].str(), "qux==3.0");
}

TEST(PypiRequirementsTest, ReadsHashesAlsoOnContinuedLines) {
  auto r = parse(
      "foo==1.0 \\\n"
      "    --hash=sha256:" +
      std::string(kHashA) +
      " \\\n"
      "    --hash sha256:" +
      std::string(kHashB) +
      "\n"
      "bar==2.0 --hash=sha512:" +
      std::string(128, 'c') + "\n");
  ASSERT_TRUE(r.errors.empty()) << ::testing::PrintToString(r.errors);
  ASSERT_EQ(r.pins.size(), 2u);
  EXPECT_EQ(r.pins[0].where, "req.txt:1");
  EXPECT_EQ(r.pins[0].hashes.at("sha256"),
            (std::set<std::string>{std::string(kHashA), std::string(64, 'b')}));
  EXPECT_EQ(r.pins[1].where, "req.txt:4");
  EXPECT_EQ(r.pins[1].hashes.at("sha512").size(), 1u);
}

TEST(PypiRequirementsTest, ACommentEndsAContinuationAsInPip) {
  // pip does not continue a line that holds a comment, even if it ends in a backslash.
  auto r = parse("foo==1.0 # note \\\nbar==2.0\r\n");
  ASSERT_TRUE(r.errors.empty()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(pins_of(r), (std::vector<std::string>{"foo==1.0 @req.txt:1", "bar==2.0 @req.txt:2"}));
  // A '#' not after whitespace is not a comment (URLs have fragments); here it breaks the version.
  EXPECT_EQ(parse("foo==1.0#x\n").errors.size(), 1u);
}

TEST(PypiRequirementsTest, IgnoresIndexAndInstallOptions) {
  auto r = parse(
      "--index-url https://pypi.example/simple/\n"
      "-i https://pypi.example/simple/\n"
      "--extra-index-url=https://other.example/simple/\n"
      "--find-links /wheels\n"
      "-f /wheels\n"
      "--trusted-host pypi.example\n"
      "--no-binary :all:\n"
      "--only-binary=:all:\n"
      "--pre\n"
      "--prefer-binary\n"
      "--require-hashes\n"
      "--no-index\n"
      "foo==1.0 --global-option=x --config-settings key=value\n");
  EXPECT_TRUE(r.errors.empty()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(pins_of(r), (std::vector<std::string>{"foo==1.0 @req.txt:13"}));
}

TEST(PypiRequirementsTest, UnpinnedRequirementsAreErrorsNamingFileAndLine) {
  auto r = parse(
      "ok==1.0\n"
      "foo>=1\n"
      "bar\n"
      "baz==1.*\n"
      "qux==1.0,<2\n"
      "quux~=1.0\n"
      "-e .\n"
      "pkg @ https://example.com/pkg-1.0.tar.gz\n"
      "./local/dir\n"
      "git+https://example.com/repo.git\n"
      "zap==\n");
  ASSERT_EQ(r.errors.size(), 10u) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.errors[0],
            "req.txt:2: \"foo>=1\": a version range, not a pin; cache warm needs every "
            "requirement pinned with == (name==version), as pip-compile writes them");
  EXPECT_NE(r.errors[1].find("req.txt:3: \"bar\": no version"), std::string::npos) << r.errors[1];
  EXPECT_NE(r.errors[2].find("req.txt:4: \"baz==1.*\": a wildcard"), std::string::npos);
  EXPECT_NE(r.errors[3].find("req.txt:5: \"qux==1.0,<2\""), std::string::npos);
  EXPECT_NE(r.errors[4].find("req.txt:6:"), std::string::npos);
  EXPECT_NE(r.errors[5].find("req.txt:7: \"-e .\": an editable requirement"), std::string::npos)
      << r.errors[5];
  EXPECT_NE(r.errors[6].find("req.txt:8:"), std::string::npos);
  EXPECT_NE(r.errors[6].find("URL"), std::string::npos) << r.errors[6];
  EXPECT_NE(r.errors[7].find("req.txt:9:"), std::string::npos);
  EXPECT_NE(r.errors[8].find("req.txt:10:"), std::string::npos);
  EXPECT_EQ(r.errors[9],
            "req.txt:11: requirement \"zap==\": version specifier \"==\": no version after the "
            "operator");
  for (std::size_t i = 0; i < 9; ++i)
    EXPECT_NE(r.errors[i].find("pinned with =="), std::string::npos) << r.errors[i];
  // The good line is still read.
  EXPECT_EQ(pins_of(r), (std::vector<std::string>{"ok==1.0 @req.txt:1"}));
}

TEST(PypiRequirementsTest, MalformedLinesAreErrors) {
  for (std::string_view line : {
           "--frobnicate\n",
           "--index-url\n",
           "--pre=yes\n",
           "foo==1.0 --hash=md5:abc\n",
           "foo==1.0 --hash=sha256:abc\n",
           "foo==1.0 --unknown\n",
           "--hash=sha256:aaaa\n",
           "foo[bar==1.0\n",
           "foo==1.0 -r other.txt\n",
           "foo==1.0 ;\n",
           "foo (==1.0\n",
           "foo==1.0 extra\n",
           "-bad\n",
       }) {
    auto r = parse(line);
    EXPECT_EQ(r.errors.size(), 1u) << line << ::testing::PrintToString(r.errors);
    EXPECT_TRUE(r.pins.empty()) << line;
    if (!r.errors.empty()) {
      EXPECT_TRUE(r.errors[0].starts_with("req.txt:1: ")) << r.errors[0];
    }
  }
}

TEST(PypiRequirementsTest, IncludesAreReadRelativeToTheIncludingFile) {
  fake_files fs;
  fs.files["dir/base.txt"] = "-r sub/more.txt\n--constraint=../constraints.txt\nbase==1.0\n";
  fs.files["dir/sub/more.txt"] = "more==2.0\n-r ../base.txt\n";
  fs.files["constraints.txt"] = "pinned==3.0\n";
  auto r = load_requirements({"dir/base.txt"}, fs.reader());
  EXPECT_TRUE(r.errors.empty()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(pins_of(r), (std::vector<std::string>{"more==2.0 @dir/sub/more.txt:1",
                                                  "pinned==3.0 @constraints.txt:1",
                                                  "base==1.0 @dir/base.txt:3"}));
  // base.txt is read once although more.txt includes it again.
  EXPECT_EQ(fs.reads,
            (std::vector<std::string>{"dir/base.txt", "dir/sub/more.txt", "constraints.txt"}));
}

TEST(PypiRequirementsTest, AMissingIncludeNamesTheIncludingLine) {
  fake_files fs;
  fs.files["req.txt"] = "a==1\n-r missing.txt\n-c /abs/c.txt\n";
  auto r = load_requirements({"req.txt", "nope.txt"}, fs.reader());
  ASSERT_EQ(r.errors.size(), 3u) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.errors[0], "req.txt:2: -r missing.txt: missing.txt: No such file or directory");
  EXPECT_EQ(r.errors[1], "req.txt:3: -c /abs/c.txt: /abs/c.txt: No such file or directory");
  EXPECT_EQ(r.errors[2], "nope.txt: No such file or directory");
  EXPECT_EQ(r.pins.size(), 1u);
  EXPECT_EQ(parse("-r https://example.com/req.txt\n").errors.size(), 1u);
}

TEST(PypiRequirementsTest, EndlessIncludesStop) {
  // Every spelling new, as through a symbolic link to its own directory.
  auto reader = [](const std::string&) -> result<std::string> { return std::string("-r l/r\n"); };
  auto r = load_requirements({"r"}, reader);
  ASSERT_EQ(r.errors.size(), 1u) << ::testing::PrintToString(r.errors);
  EXPECT_NE(r.errors[0].find("nest deeper than 32"), std::string::npos) << r.errors[0];
}

TEST(PypiRequirementsTest, DuplicatePinsMergeTheirHashes) {
  auto r = parse("foo==1.0 --hash=sha256:" + std::string(kHashA) +
                 "\nFOO==1.0 --hash=sha256:" + std::string(kHashB) + "\nfoo==2.0\n");
  ASSERT_TRUE(r.errors.empty()) << ::testing::PrintToString(r.errors);
  ASSERT_EQ(r.pins.size(), 2u);
  EXPECT_EQ(r.pins[0].where, "req.txt:1");
  EXPECT_EQ(r.pins[0].hashes.at("sha256").size(), 2u);
  EXPECT_EQ(r.pins[1].str(), "foo==2.0");
}

// ---- versions ---------------------------------------------------------------------------------

TEST(PypiRequirementsTest, NormalizesVersionsAsPep440) {
  const std::map<std::string, std::string> cases = {
      {"1.0", "1.0"},
      {"v1.0", "1.0"},
      {"V1.0.0", "1.0.0"},
      {"01.002", "1.2"},
      {"1.0-RC.1", "1.0rc1"},
      {"1.0alpha2", "1.0a2"},
      {"1.0.beta", "1.0b0"},
      {"1.0c3", "1.0rc3"},
      {"1.0preview1", "1.0rc1"},
      {"1.0-1", "1.0.post1"},
      {"1.0.post", "1.0.post0"},
      {"1.0rev2", "1.0.post2"},
      {"1.0-r3", "1.0.post3"},
      {"2!1.0.DEV", "2!1.0.dev0"},
      {"1.0a1.post2.dev3", "1.0a1.post2.dev3"},
      {"1.0+Ubuntu-1", "1.0+ubuntu.1"},
      {"1.0+abc.007", "1.0+abc.7"},
      {" 1.0 ", "1.0"},
      // The PEP's grammar lets a label's separator stand without a number after it.
      {"1.0-dev-", "1.0.dev0"},
  };
  for (const auto& [in, want] : cases)
    EXPECT_EQ(normalize_version(in), std::optional<std::string>(want)) << in;
  for (std::string_view bad : {"", "abc", "1.0.", "1..0", "1.0+", "1.0+a..b", "1.0-", "1.0 2",
                               "1.0-dev-1-", "1!", "dev1"}) {
    EXPECT_EQ(normalize_version(bad), std::nullopt) << bad;
  }
}

pin make_pin(std::string version, bool arbitrary = false) {
  pin p;
  p.name = "foo";
  p.version = std::move(version);
  p.arbitrary = arbitrary;
  return p;
}

TEST(PypiRequirementsTest, PinsMatchEqualVersions) {
  EXPECT_TRUE(version_matches(make_pin("1.0"), "1.0"));
  EXPECT_TRUE(version_matches(make_pin("1.0"), "1.0.0"));
  EXPECT_TRUE(version_matches(make_pin("1"), "1.0"));
  EXPECT_TRUE(version_matches(make_pin("1.0.0"), "1"));
  EXPECT_TRUE(version_matches(make_pin("1.0rc1"), "1.0-RC-1"));
  EXPECT_TRUE(version_matches(make_pin("1.0"), "1.0+cpu"));
  EXPECT_TRUE(version_matches(make_pin("1.0+cpu"), "1.0+CPU"));
  EXPECT_FALSE(version_matches(make_pin("1.0+cpu"), "1.0"));
  EXPECT_FALSE(version_matches(make_pin("1.0+cpu"), "1.0+cu118"));
  EXPECT_FALSE(version_matches(make_pin("1.0"), "1.0.1"));
  EXPECT_FALSE(version_matches(make_pin("1.0"), "1.0.post1"));
  EXPECT_FALSE(version_matches(make_pin("1.0"), "1.0rc1"));
  EXPECT_FALSE(version_matches(make_pin("1.0"), "1!1.0"));
  EXPECT_FALSE(version_matches(make_pin("1.10"), "1.1"));
  // Not PEP 440 on either side, or ===: the same string, case aside.
  EXPECT_TRUE(version_matches(make_pin("2004d"), "2004D"));
  EXPECT_FALSE(version_matches(make_pin("2004d"), "2004"));
  EXPECT_TRUE(version_matches(make_pin("1.0", true), "1.0"));
  EXPECT_FALSE(version_matches(make_pin("1.0", true), "1.0.0"));
}

// ---- wheel tags -------------------------------------------------------------------------------

file_filter platforms(std::vector<std::string> p) {
  file_filter f;
  f.platforms = std::move(p);
  return f;
}

file_filter python(unsigned major, unsigned minor) {
  file_filter f;
  f.python = std::pair(major, minor);
  return f;
}

TEST(PypiRequirementsTest, WheelsMatchPlatformTags) {
  const auto manylinux = platforms({"manylinux2014_x86_64"});
  EXPECT_TRUE(wheel_matches("foo-1.0-cp311-cp311-manylinux2014_x86_64.whl", manylinux));
  EXPECT_TRUE(wheel_matches("foo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                            manylinux));
  EXPECT_TRUE(wheel_matches("foo-1.0-cp311-cp311-manylinux1_x86_64.whl", manylinux));
  EXPECT_TRUE(wheel_matches("foo-1.0-cp311-cp311-manylinux_2_5_x86_64.whl", manylinux));
  EXPECT_TRUE(wheel_matches("foo-1.0-py3-none-any.whl", manylinux));
  EXPECT_TRUE(wheel_matches("Foo-1.0-1-py2.py3-none-ANY.whl", manylinux));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", manylinux));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp311-cp311-manylinux2014_aarch64.whl", manylinux));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp311-cp311-musllinux_1_1_x86_64.whl", manylinux));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp311-cp311-linux_x86_64.whl", manylinux));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp311-cp311-win_amd64.whl", manylinux));
  EXPECT_FALSE(wheel_matches("foo-1.0.tar.gz", manylinux));
  EXPECT_FALSE(wheel_matches("not-a-wheel.whl", manylinux));

  const auto newer = platforms({"manylinux_2_28_x86_64", "musllinux_1_2_x86_64"});
  EXPECT_TRUE(wheel_matches("foo-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", newer));
  EXPECT_TRUE(wheel_matches("foo-1.0-cp311-cp311-manylinux2010_x86_64.whl", newer));
  EXPECT_TRUE(wheel_matches("foo-1.0-cp311-cp311-musllinux_1_1_x86_64.whl", newer));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp311-cp311-manylinux_2_31_x86_64.whl", newer));

  const auto win = platforms({"win_amd64"});
  EXPECT_TRUE(wheel_matches("foo-1.0-cp311-cp311-win_amd64.whl", win));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp311-cp311-win32.whl", win));
  const auto pure = platforms({"any"});
  EXPECT_TRUE(wheel_matches("foo-1.0-py3-none-any.whl", pure));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp311-cp311-win_amd64.whl", pure));
}

TEST(PypiRequirementsTest, WheelsMatchPythonVersions) {
  const auto py311 = python(3, 11);
  for (std::string_view ok : {
           "foo-1.0-py3-none-any.whl",
           "foo-1.0-py2.py3-none-any.whl",
           "foo-1.0-py311-none-any.whl",
           "foo-1.0-py38-none-any.whl",
           "foo-1.0-cp311-cp311-manylinux2014_x86_64.whl",
           "foo-1.0-cp311-none-win_amd64.whl",
           "foo-1.0-cp311-abi3-win_amd64.whl",
           "foo-1.0-cp37-abi3-manylinux2014_x86_64.whl",
           "foo-1.0-cp36.cp37-abi3-any.whl",
       }) {
    EXPECT_TRUE(wheel_matches(ok, py311)) << ok;
  }
  for (std::string_view no : {
           "foo-1.0-py2-none-any.whl",
           "foo-1.0-py312-none-any.whl",
           "foo-1.0-cp310-cp310-manylinux2014_x86_64.whl",
           "foo-1.0-cp312-cp312-manylinux2014_x86_64.whl",
           "foo-1.0-cp312-abi3-manylinux2014_x86_64.whl",
           "foo-1.0-pp39-pypy39_pp73-manylinux2014_x86_64.whl",
           "foo-1.0-cp27-cp27mu-manylinux1_x86_64.whl",
       }) {
    EXPECT_FALSE(wheel_matches(no, py311)) << no;
  }
  auto both = python(3, 11);
  both.platforms = {"win_amd64"};
  EXPECT_TRUE(wheel_matches("foo-1.0-cp311-cp311-win_amd64.whl", both));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp311-cp311-manylinux2014_x86_64.whl", both));
  EXPECT_FALSE(wheel_matches("foo-1.0-cp310-cp310-win_amd64.whl", both));
}

// ---- choosing files ---------------------------------------------------------------------------

file_entry file(std::string name, std::string sha256 = "", std::optional<std::string> yanked = {}) {
  file_entry f;
  f.url = "https://pantry.example/files/up/host/" + name;
  f.filename = std::move(name);
  if (!sha256.empty()) f.hashes["sha256"] = std::move(sha256);
  f.yanked = std::move(yanked);
  return f;
}

std::vector<std::string> chosen(const project_page& page, const file_choice& c) {
  std::vector<std::string> out;
  for (auto i : c.files)
    out.push_back(page.files[i].filename);
  return out;
}

project_page native_page() {
  project_page page;
  page.name = "foo";
  page.files = {
      file("foo-0.9.tar.gz"),
      file("foo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
           std::string(kHashA)),
      file("foo-1.0-cp311-cp311-win_amd64.whl", std::string(64, 'b')),
      file("foo-1.0-cp310-cp310-win_amd64.whl", std::string(64, 'c')),
      file("Foo-1.0.tar.gz", std::string(64, 'd')),
      file("foo-1.0.egg"),
      file("foo-1.0.0.post1-py3-none-any.whl"),
      file("bar-1.0-py3-none-any.whl"),
  };
  return page;
}

TEST(PypiRequirementsTest, WithoutAFilterEveryWheelAndSdistOfTheVersionIsChosen) {
  const auto page = native_page();
  auto c = choose_files(page, make_pin("1.0.0"), {});
  EXPECT_EQ(c.result, file_choice::outcome::ok);
  EXPECT_EQ(chosen(page, c),
            (std::vector<std::string>{
                "foo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "foo-1.0-cp311-cp311-win_amd64.whl", "foo-1.0-cp310-cp310-win_amd64.whl",
                "Foo-1.0.tar.gz"}));
  EXPECT_FALSE(c.yanked);
}

TEST(PypiRequirementsTest, AFilterChoosesWheelsOrElseTheSdist) {
  const auto page = native_page();
  auto c = choose_files(page, make_pin("1.0"), platforms({"win_amd64"}));
  EXPECT_EQ(chosen(page, c), (std::vector<std::string>{"foo-1.0-cp311-cp311-win_amd64.whl",
                                                       "foo-1.0-cp310-cp310-win_amd64.whl"}));
  auto both = python(3, 10);
  both.platforms = {"win_amd64"};
  c = choose_files(page, make_pin("1.0"), both);
  EXPECT_EQ(chosen(page, c), (std::vector<std::string>{"foo-1.0-cp310-cp310-win_amd64.whl"}));
  c = choose_files(page, make_pin("1.0"), platforms({"macosx_11_0_arm64"}));
  EXPECT_EQ(c.result, file_choice::outcome::ok);
  EXPECT_EQ(chosen(page, c), (std::vector<std::string>{"Foo-1.0.tar.gz"}));
}

TEST(PypiRequirementsTest, NothingMatchingTheFilterIsAnOutcomeOfItsOwn) {
  project_page page;
  page.name = "foo";
  page.files = {file("foo-1.0-cp311-cp311-win_amd64.whl")};
  auto c = choose_files(page, make_pin("1.0"), platforms({"linux_aarch64"}));
  EXPECT_EQ(c.result, file_choice::outcome::no_matching_file);
  EXPECT_TRUE(c.files.empty());
  EXPECT_EQ(c.message, "foo==1.0: no wheel matches --platform linux_aarch64 and there is no sdist");
}

TEST(PypiRequirementsTest, AMissingVersionNamesThePinAndWhatThereIs) {
  const auto page = native_page();
  auto c = choose_files(page, make_pin("9.9"), {});
  EXPECT_EQ(c.result, file_choice::outcome::no_such_version);
  EXPECT_EQ(c.message,
            "foo==9.9: the index has no wheel or sdist of version 9.9 (versions: 0.9, 1.0, "
            "1.0.0.post1)");
  project_page empty;
  empty.name = "foo";
  c = choose_files(empty, make_pin("1.0"), {});
  EXPECT_EQ(c.result, file_choice::outcome::no_such_version);
  EXPECT_NE(c.message.find("lists no files"), std::string::npos) << c.message;
}

TEST(PypiRequirementsTest, YankedFilesAreTakenOnlyWhenTheWholeVersionIsYanked) {
  project_page page;
  page.name = "foo";
  page.files = {file("foo-1.0-py3-none-any.whl", "", ""), file("foo-1.0.tar.gz", "", "broken"),
                file("foo-1.1-py3-none-any.whl", "", "bad"), file("foo-1.1.tar.gz")};
  auto c = choose_files(page, make_pin("1.0"), {});
  EXPECT_TRUE(c.yanked);
  EXPECT_EQ(c.files.size(), 2u);
  c = choose_files(page, make_pin("1.1"), {});
  EXPECT_FALSE(c.yanked);
  EXPECT_EQ(chosen(page, c), (std::vector<std::string>{"foo-1.1.tar.gz"}));
}

TEST(PypiRequirementsTest, HashPinsLeaveOutFilesWithOtherHashes) {
  const auto page = native_page();
  auto p = make_pin("1.0");
  p.hashes["sha256"] = {std::string(kHashA), std::string(64, 'd')};
  auto c = choose_files(page, p, {});
  EXPECT_EQ(
      chosen(page, c),
      (std::vector<std::string>{
          "foo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "Foo-1.0.tar.gz"}));
  EXPECT_EQ(c.hash_skipped, 2u);
  // With a filter the hash check comes first: the win wheels are not allowed, so the sdist is it.
  c = choose_files(page, p, platforms({"win_amd64"}));
  EXPECT_EQ(chosen(page, c), (std::vector<std::string>{"Foo-1.0.tar.gz"}));

  p.hashes = {{"sha256", {std::string(64, 'e')}}};
  p.where = "req.txt:7";
  c = choose_files(page, p, {});
  EXPECT_EQ(c.result, file_choice::outcome::no_allowed_hash);
  EXPECT_EQ(c.message,
            "foo==1.0: none of the 4 files of the version has a hash its --hash options allow");
  // A hash of an algorithm the index does not give allows nothing.
  p.hashes = {{"sha512", {std::string(128, 'a')}}};
  EXPECT_EQ(choose_files(page, p, {}).result, file_choice::outcome::no_allowed_hash);
}

}  // namespace
}  // namespace pantry::registry::pypi
