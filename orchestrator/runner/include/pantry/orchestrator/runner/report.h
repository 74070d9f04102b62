#pragma once

// The environment report a step's log starts with, so that a failure can be read from the log
// alone (as GitLab's runner prints its own and the image's versions): the host's platform and
// kernel, the image as given and as pinned, the step's environment with secrets masked, and the
// image's Python, pip and installed distributions where it has them. Pure code: the runner
// gathers the facts (host_facts, the probe's output) and writes these lines.

#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner {

struct host_facts {
  std::string os;       // PRETTY_NAME of /etc/os-release, "" when unknown
  std::string kernel;   // uname -r
  std::string machine;  // uname -m
};

// This host's facts (reads /etc/os-release and uname once per call).
host_facts read_host_facts();

// True for an environment variable whose name says it holds a secret: it contains (any case)
// TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL, PRIVATE, AUTH, APIKEY or API_KEY, or ends in _KEY
// or _PASS. Its value is shown as "[masked]" in the report.
bool secret_looking_name(std::string_view name);

// The report's lines, without terminators. `env` is the step's environment ("KEY=VALUE", in
// order); a value holding any of `secret_values` (non-empty) is masked as a whole, as is any
// value of a secret-looking name.
std::vector<std::string> environment_report(const host_facts& host, std::string_view image,
                                            std::string_view pinned_image,
                                            const std::vector<std::string>& env,
                                            const std::vector<std::string>& secret_values);

// A step's command as one line for pantry's own log: the arguments joined by spaces, every
// occurrence of a non-empty secret value replaced by "[masked]", cut after `max` bytes with "…";
// "(the image's command)" for an empty argv.
std::string command_for_log(const std::vector<std::string>& argv,
                            const std::vector<std::string>& secret_values, std::size_t max = 200);

// The shell script the Python probe runs (`/bin/sh -c SCRIPT`) in the step's image: prints
// python3's and pip's versions and `pip freeze --all`, each section under a marker line the
// report reads back; prints nothing when the image has no python3 on the step's PATH.
std::string_view python_probe_script() noexcept;

// The report lines made from the probe's output (its stdout and stderr merged), at most
// `max_lines` of them (the rest counted in a last line); none when the output has no python3
// section.
std::vector<std::string> python_report(std::string_view probe_output, std::size_t max_lines = 500);

}  // namespace pantry::orchestrator::runner
