#pragma once

// A child process started with posix_spawn: an explicit program path and environment (nothing of
// the caller's is inherited, no PATH search), stdin on /dev/null, stdout and stderr on one pipe
// (so that their order is kept) or on two, and no other descriptor of the caller's (every
// descriptor from 3 up is closed in the child, whatever its close-on-exec flag).
//
// The process is held through a pidfd, so signal() never hits a recycled pid: it is safe from any
// thread at any time, also while another thread is in pump() or wait(), and after the process was
// reaped (it then does nothing). pump(), wait() and wait_until() block; call them from one thread
// at a time, never from an I/O thread.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/fd.h"

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner {

// Which pipe a chunk of output came from. With output_mode::merged all of it is `out`.
enum class output_stream { out, err };

enum class output_mode {
  merged,    // stdout and stderr share one pipe: the exact order of their writes is kept
  separate,  // one pipe each: order is kept within each stream only
};

// Why a pump() returned.
enum class pump_status {
  eof,          // every output pipe reached its end (every writer closed it)
  deadline,     // the deadline passed first
  interrupted,  // `interrupt_fd` became readable first
};

using spawn_clock = std::chrono::steady_clock;
// Receives output as it arrives: a chunk of bytes of one stream (never empty).
using chunk_sink = std::function<void(output_stream, std::string_view)>;

// The pipes that carry the output of one or more processes to the caller: one pipe for
// output_mode::merged, two for separate. process::spawn() makes its own; a caller makes one to
// share the writers between processes (runc and the container it starts, which outlives runc).
class output_pipe {
 public:
  // Errors: errc::io_error when pipe2 fails.
  static result<output_pipe> create(output_mode mode);

  // The write ends to give children (spawn_options::output_to); stderr's is stdout's when merged.
  int out_writer() const noexcept { return out_w_.get(); }
  int err_writer() const noexcept { return err_w_ ? err_w_.get() : out_w_.get(); }
  // Closes the caller's write ends, once the children have theirs: eof comes when they close.
  void close_writers() noexcept;

  // Reads the pipes and hands every chunk to `sink` (on the calling thread), until both reached
  // their end, `deadline` passed, or `interrupt_fd` (an eventfd, say; -1 for none) became
  // readable; the caller resets it. Call again to go on reading; after eof it returns eof at
  // once. Errors: errc::io_error when poll or read fails.
  result<pump_status> pump(const chunk_sink& sink,
                           std::optional<spawn_clock::time_point> deadline = {},
                           int interrupt_fd = -1);
  // Stops reading: closes the read ends (a writer still alive then gets SIGPIPE).
  void close_readers() noexcept;

 private:
  unique_fd out_r_, out_w_, err_r_, err_w_;
};

struct spawn_options {
  std::string program;            // absolute path, executed as it is
  std::vector<std::string> args;  // argv[1…]; argv[0] is `program`
  std::vector<std::string> env;   // "KEY=VALUE": the child's whole environment
  std::string working_dir;        // "" keeps the caller's
  output_mode output = output_mode::merged;
  // Write stdout and stderr to these pipes' writers instead of pipes of the process's own
  // (process::pump() then has nothing to read). Only read during spawn().
  const output_pipe* output_to = nullptr;
  // Put the child in a process group of its own, so that a terminal's ^C reaches the caller only
  // (which then decides how to stop the child).
  bool new_process_group = false;
};

// How a process ended.
struct exit_status {
  int code = 0;    // the exit code when the process exited
  int signal = 0;  // the signal that killed it, else 0

  bool exited() const noexcept { return signal == 0; }
  bool success() const noexcept { return signal == 0 && code == 0; }
};
// "exit code 3" or "killed by signal 9 (Killed)".
std::string to_string(const exit_status& status);

class process {
 public:
  using clock = spawn_clock;

  // Starts the process. Errors: errc::invalid_argument for a relative program path or a NUL byte
  // in an argument; errc::not_found when the program does not exist; errc::io_error for any other
  // failure to create pipes or start it (the message names the program and the reason).
  static result<process> spawn(const spawn_options& options);

  // Takes charge of a running process that another process started: a container's init, which
  // runc leaves behind and the kernel reparents to this process when it is a child subreaper
  // (prctl PR_SET_CHILD_SUBREAPER). signal() works for any process; wait() only for a child of
  // this process, else it fails with errc::not_found. It has no output to pump. Errors:
  // errc::not_found when `pid` does not exist, errc::io_error otherwise.
  static result<process> adopt(pid_t pid);

  process(process&& other) noexcept;
  process& operator=(process&& other) noexcept;
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  // A process not yet reaped is killed (SIGKILL) and reaped: no zombie is left behind.
  ~process();

  pid_t pid() const noexcept { return pid_; }
  // The pidfd (for poll: readable once the process has exited).
  int pidfd() const noexcept { return pidfd_.get(); }

  // Sends `sig` to the process (not to its group). Success also when the process has already
  // exited. Errors: errc::io_error with the reason (EPERM, EINVAL).
  result<void> signal(int sig) const;

  // The process's own output pipes' pump() (output_pipe::pump): eof at once when it writes to
  // a caller's pipe (spawn_options::output_to).
  result<pump_status> pump(const chunk_sink& sink, std::optional<clock::time_point> deadline = {},
                           int interrupt_fd = -1) {
    return output_.pump(sink, deadline, interrupt_fd);
  }
  // Stops reading the process's own output (output_pipe::close_readers).
  void close_output() noexcept { output_.close_readers(); }

  // Waits for the process to end and reaps it. After the first success it returns the same
  // status again. Errors: errc::not_found when the process is not a child of this one (adopt()),
  // errc::io_error.
  result<exit_status> wait();
  // As wait(), but nullopt when the process is still running at `deadline`.
  result<std::optional<exit_status>> wait_until(clock::time_point deadline);

 private:
  process() = default;
  result<exit_status> reap();
  void kill_and_reap() noexcept;

  pid_t pid_ = -1;
  unique_fd pidfd_;
  output_pipe output_;
  std::optional<exit_status> status_;
};

// What run_process() collected.
struct process_output {
  exit_status status;
  std::string out;         // stdout, and stderr when merged
  std::string err;         // stderr when separate
  bool truncated = false;  // output beyond `max_output` bytes was dropped
  // The process, or a child of it holding its output open, was still running at the timeout:
  // the process was killed (SIGKILL) and the output stops there.
  bool timed_out = false;
};

// Runs a process to its end, collecting its output (at most `max_output` bytes of each stream;
// for commands that print little, such as runc's), within `timeout` (see timed_out). Errors: as
// spawn(), pump() and wait().
result<process_output> run_process(const spawn_options& options,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(60),
                                   std::size_t max_output = std::size_t{1} << 20);

}  // namespace pantry::orchestrator::runner
