#include "pantry/orchestrator/runner/report.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::orchestrator::runner {
namespace {

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines)
    out += l + "\n";
  return out;
}

TEST(ReportTest, SecretLookingNames) {
  for (const char* name : {"GITHUB_TOKEN", "api_key", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD",
                           "PyPI_Auth", "SSH_PRIVATE_KEY", "MY_KEY", "SMTP_PASS", "APIKEY"}) {
    EXPECT_TRUE(secret_looking_name(name)) << name;
  }
  for (const char* name : {"PATH", "HOME", "KEYBOARD", "PIP_INDEX_URL", "PASSENGER", "MONKEY"}) {
    EXPECT_FALSE(secret_looking_name(name)) << name;
  }
}

TEST(ReportTest, EnvironmentIsListedInOrderWithSecretsMasked) {
  host_facts host{"Debian GNU/Linux 12 (bookworm)", "6.1.0-9-amd64", "x86_64"};
  auto lines = environment_report(
      host, "local/app@sha256:ab", "local/app@sha256:ab",
      {"PATH=/usr/bin", "GITHUB_TOKEN=ghp_abc", "MSG=the key is s3cr3t-value!", "EMPTY="},
      {"s3cr3t-value"});
  const std::string text = joined(lines);
  EXPECT_EQ(lines.at(0), "host: Debian GNU/Linux 12 (bookworm), x86_64, kernel 6.1.0-9-amd64")
      << text;
  EXPECT_EQ(lines.at(1), "image: local/app@sha256:ab") << text;
  EXPECT_EQ(lines.at(2), "environment:") << text;
  EXPECT_EQ(lines.at(3), "  PATH=/usr/bin") << text;
  EXPECT_EQ(lines.at(4), "  GITHUB_TOKEN=[masked]") << text;
  EXPECT_EQ(lines.at(5), "  MSG=[masked]") << text;
  EXPECT_EQ(lines.at(6), "  EMPTY=") << text;
  EXPECT_EQ(text.find("ghp_abc"), std::string::npos) << text;
  EXPECT_EQ(text.find("s3cr3t"), std::string::npos) << text;
}

TEST(ReportTest, PinnedImageIsShownWhenItDiffers) {
  auto lines = environment_report({}, "python:3.11", "python@sha256:cd", {}, {});
  EXPECT_EQ(lines.at(0), "host: unknown OS, , kernel ") << joined(lines);
  EXPECT_EQ(lines.at(1), "image: python:3.11");
  EXPECT_EQ(lines.at(2), "image pinned: python@sha256:cd");
}

TEST(ReportTest, PythonReportReadsTheProbeSections) {
  auto lines = python_report(
      "--pantry-probe python--\nPython 3.11.2\n--pantry-probe pip--\n"
      "pip 23.0.1 from /usr/lib/python3/dist-packages/pip (python 3.11)\n"
      "--pantry-probe freeze--\nattrs==22.2.0\r\npytest==7.2.1\n\n");
  ASSERT_EQ(lines.size(), 5u) << joined(lines);
  EXPECT_EQ(lines[0], "python: Python 3.11.2");
  EXPECT_EQ(lines[1], "pip: pip 23.0.1 from /usr/lib/python3/dist-packages/pip (python 3.11)");
  EXPECT_EQ(lines[2], "pip freeze:");
  EXPECT_EQ(lines[3], "  attrs==22.2.0");
  EXPECT_EQ(lines[4], "  pytest==7.2.1");
}

TEST(ReportTest, NoPythonNoReportAndPythonWithoutPip) {
  EXPECT_TRUE(python_report("").empty());
  EXPECT_TRUE(python_report("sh: python3: not found\n").empty());
  auto lines = python_report("--pantry-probe python--\nPython 3.12.1\n");
  ASSERT_EQ(lines.size(), 2u) << joined(lines);
  EXPECT_EQ(lines[0], "python: Python 3.12.1");
  EXPECT_EQ(lines[1], "pip freeze: (nothing installed)");
}

TEST(ReportTest, LongFreezeIsCut) {
  std::string probe = "--pantry-probe python--\nPython 3.11.2\n--pantry-probe freeze--\n";
  for (int i = 0; i < 20; ++i)
    probe += "pkg" + std::to_string(i) + "==1.0\n";
  auto lines = python_report(probe, 10);
  ASSERT_EQ(lines.size(), 11u) << joined(lines);
  EXPECT_EQ(lines[9], "  pkg7==1.0");
  EXPECT_EQ(lines[10], "  … and 12 more");
}

TEST(ReportTest, CommandForTheLogMasksSecretsAndIsCut) {
  EXPECT_EQ(command_for_log({"sh", "-c", "curl -H 'token: s3cr3t-value' x"}, {"s3cr3t-value"}),
            "sh -c curl -H 'token: [masked]' x");
  EXPECT_EQ(command_for_log({}, {"x"}), "(the image's command)");
  EXPECT_EQ(command_for_log({"echo", std::string(300, 'a')}, {}, 20),
            "echo " + std::string(15, 'a') + "…");
  // A value that "[masked]" itself holds is replaced once per occurrence, not for ever.
  EXPECT_EQ(command_for_log({"echo", "mask", "mask"}, {"mask", ""}), "echo [masked] [masked]");
}

TEST(ReportTest, ProbeScriptRunsUnderPosixShell) {
  // The script is what /bin/sh runs in images as small as busybox: no bashisms.
  const std::string script(python_probe_script());
  EXPECT_EQ(script.find("[["), std::string::npos) << script;
  EXPECT_EQ(script.find("function "), std::string::npos) << script;
  EXPECT_NE(script.find("command -v python3"), std::string::npos) << script;
}

}  // namespace
}  // namespace pantry::orchestrator::runner
