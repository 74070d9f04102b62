#include "pantry/orchestrator/runner/report.h"

#include "pantry/text.h"

#include <sys/utsname.h>

#include <array>
#include <fstream>

namespace pantry::orchestrator::runner {
namespace {

constexpr std::string_view kMasked = "[masked]";

// The probe's section markers: lines no Python tool prints.
constexpr std::string_view kPythonMarker = "--pantry-probe python--";
constexpr std::string_view kPipMarker = "--pantry-probe pip--";
constexpr std::string_view kFreezeMarker = "--pantry-probe freeze--";

std::string unquote(std::string_view v) {
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
    v = v.substr(1, v.size() - 2);
  }
  return std::string(v);
}

bool holds_secret(std::string_view value, const std::vector<std::string>& secrets) {
  for (const auto& s : secrets) {
    if (!s.empty() && value.find(s) != std::string_view::npos) return true;
  }
  return false;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

}  // namespace

host_facts read_host_facts() {
  host_facts f;
  struct utsname u {};
  if (::uname(&u) == 0) {
    f.kernel = u.release;
    f.machine = u.machine;
  }
  std::ifstream in("/etc/os-release");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("PRETTY_NAME=")) f.os = unquote(line.substr(12));
  }
  return f;
}

bool secret_looking_name(std::string_view name) {
  const std::string lower = ascii_lower(name);
  static constexpr std::array<std::string_view, 9> kWords = {"token",  "secret",     "password",
                                                             "passwd", "credential", "private",
                                                             "auth",   "apikey",     "api_key"};
  for (auto w : kWords) {
    if (lower.find(w) != std::string::npos) return true;
  }
  return lower.ends_with("_key") || lower.ends_with("_pass");
}

std::vector<std::string> environment_report(const host_facts& host, std::string_view image,
                                            std::string_view pinned_image,
                                            const std::vector<std::string>& env,
                                            const std::vector<std::string>& secret_values) {
  std::vector<std::string> out;
  out.push_back("host: " + (host.os.empty() ? std::string("unknown OS") : host.os) + ", " +
                host.machine + ", kernel " + host.kernel);
  out.push_back("image: " + std::string(image));
  if (pinned_image != image) out.push_back("image pinned: " + std::string(pinned_image));
  out.push_back("environment:");
  for (const auto& kv : env) {
    auto eq = kv.find('=');
    std::string_view key = std::string_view(kv).substr(0, eq);
    std::string_view value = eq == std::string::npos ? "" : std::string_view(kv).substr(eq + 1);
    bool mask = secret_looking_name(key) || holds_secret(value, secret_values);
    out.push_back("  " + std::string(key) + "=" + std::string(mask ? kMasked : value));
  }
  return out;
}

std::string command_for_log(const std::vector<std::string>& argv,
                            const std::vector<std::string>& secret_values, std::size_t max) {
  if (argv.empty()) return "(the image's command)";
  std::string command;
  for (const auto& a : argv)
    command += (command.empty() ? "" : " ") + a;
  for (const auto& v : secret_values) {
    if (v.empty()) continue;
    // Searching on after the replacement: a value inside "[masked]" ("mask") is not replaced
    // again and again.
    for (auto at = command.find(v); at != std::string::npos;
         at = command.find(v, at + kMasked.size())) {
      command.replace(at, v.size(), kMasked);
    }
  }
  if (command.size() > max) command = command.substr(0, max) + "…";
  return command;
}

std::string_view python_probe_script() noexcept {
  // `command -v` finds python3 on the step's PATH (a venv's first). Every section prints its
  // marker first so that the report can tell an empty section from a missing one; pip's own
  // warnings go to stderr, which is merged: the freeze section drops lines that are not
  // requirements.
  return "command -v python3 >/dev/null 2>&1 || exit 0\n"
         "echo '--pantry-probe python--'; python3 --version 2>&1\n"
         "python3 -m pip --version >/dev/null 2>&1 || exit 0\n"
         "echo '--pantry-probe pip--'; python3 -m pip --version 2>&1\n"
         "echo '--pantry-probe freeze--'; "
         "PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip freeze --all 2>/dev/null\n"
         "exit 0\n";
}

std::vector<std::string> python_report(std::string_view probe_output, std::size_t max_lines) {
  std::vector<std::string> out;
  enum class section { none, python, pip, freeze } at = section::none;
  std::vector<std::string> freeze;
  bool seen_python = false;
  for (auto line : split_lines(probe_output)) {
    if (line == kPythonMarker) {
      at = section::python;
      seen_python = true;
      continue;
    }
    if (line == kPipMarker) {
      at = section::pip;
      continue;
    }
    if (line == kFreezeMarker) {
      at = section::freeze;
      continue;
    }
    auto text = trim_ascii_space(line);
    if (text.empty()) continue;
    switch (at) {
      case section::none:
        break;
      case section::python:
        out.push_back("python: " + std::string(text));
        break;
      case section::pip:
        out.push_back("pip: " + std::string(text));
        break;
      case section::freeze:
        freeze.emplace_back(text);
        break;
    }
  }
  if (!seen_python) return {};
  out.push_back("pip freeze:" + std::string(freeze.empty() ? " (nothing installed)" : ""));
  std::size_t room = max_lines > out.size() ? max_lines - out.size() : 0;
  for (std::size_t i = 0; i < freeze.size(); ++i) {
    if (i + 1 > room) {
      out.push_back("  … and " + std::to_string(freeze.size() - i) + " more");
      break;
    }
    out.push_back("  " + freeze[i]);
  }
  return out;
}

}  // namespace pantry::orchestrator::runner
