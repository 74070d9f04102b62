#pragma once

// How the pantry command finds the `pantry serve` that holds a data dir, so that `pantry run` and
// `pantry build` become its clients instead of opening the data dir themselves: a running serve
// publishes its loopback URL and a control token in `<data dir>/serve.json` (mode 0600: whoever
// may read the data dir may run steps, and nobody else), and withdraws it when it stops. The
// token authorises the control routes (/api/v1/runner/…); it is new on every start.

#include "pantry/error.h"

#include <filesystem>
#include <optional>
#include <string>

namespace pantry::app {

struct control_endpoint {
  std::string url;    // "http://127.0.0.1:PORT": pantry's own routes, from this machine
  std::string token;  // for `Authorization: Bearer …`
  long pid = 0;       // the serving process
};

// <data_dir>/serve.json
std::filesystem::path control_file(const std::filesystem::path& data_dir);

// The endpoint published in data_dir, or nullopt when none is (no file, or its process is gone:
// a crashed serve leaves the file behind). Errors: the file exists but cannot be read or parsed
// (the message names it and says to remove it if no pantry runs).
result<std::optional<control_endpoint>> find_control(const std::filesystem::path& data_dir);

// Writes the file atomically (a temporary file renamed over it), mode 0600.
result<void> publish_control(const std::filesystem::path& data_dir, const control_endpoint& ep);

// Removes the file if it names `pid`; errors are ignored (a stale file is recognised by its pid).
void withdraw_control(const std::filesystem::path& data_dir, long pid) noexcept;

// 32 random bytes in hex, from the kernel's generator.
std::string new_control_token();

// The URL at which this machine reaches a server listening on `host`:`port` (loopback for a
// wildcard address, brackets for IPv6).
std::string loopback_url(const std::string& host, unsigned port);

}  // namespace pantry::app
