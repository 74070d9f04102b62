#pragma once

// systemd's notify protocol (sd_notify(3)), spoken without libsystemd: one datagram of
// newline-separated KEY=VALUE lines to the AF_UNIX socket that $NOTIFY_SOCKET names (a path, or
// an abstract name written with a leading '@'). Under deploy/pantry.service (Type=notify,
// NotifyAccess=all) `pantry serve` sends READY=1 once it listens and its services started;
// a successor started by `pantry upgrade` sends MAINPID=<its pid> and READY=1 before its
// predecessor exits, so that systemd follows the service to the new process; a serve that stops
// for good sends STOPPING=1; a reload on SIGHUP is framed by RELOADING=1 and READY=1.
//
// pantry takes NOTIFY_SOCKET out of its environment when it starts (take_notify_socket()), so
// that the jobs, git and other programs it runs do not see it; start_successor() gives it back
// to the new pantry.

#include "pantry/error.h"

#include <string>
#include <string_view>

namespace pantry::app {

inline constexpr std::string_view kNotifySocketEnv = "NOTIFY_SOCKET";

// Sends `message` as one datagram to the socket named `socket` (an absolute path, or '@' and an
// abstract name). Errors name the socket and the cause: a name that is neither form, one too long
// for an AF_UNIX address, or a failed send.
result<void> send_notify(std::string_view socket, std::string_view message);

// Reads NOTIFY_SOCKET and removes it from the environment: call before any thread starts.
void take_notify_socket();
// The value take_notify_socket() took; empty when NOTIFY_SOCKET was not set.
const std::string& notify_socket();

// send_notify() to notify_socket() when there is one; a failure is logged as a warning (a service
// manager that stopped listening does not stop pantry).
void notify_service_manager(std::string_view message) noexcept;

// "RELOADING=1\nMONOTONIC_USEC=<now>": what a reload starts with (sd_notify(3)).
std::string format_reloading();

}  // namespace pantry::app
