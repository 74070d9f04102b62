#include "pantry/orchestrator/runner/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>

namespace pantry::orchestrator::runner {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

spawn_options shell(std::string script, output_mode mode = output_mode::merged) {
  spawn_options o;
  o.program = "/bin/sh";
  o.args = {"-c", std::move(script)};
  o.env = {"PATH=/usr/bin:/bin"};
  o.output = mode;
  return o;
}

TEST(ProcessTest, MergedOutputKeepsTheOrderOfWrites) {
  auto out = run_process(shell("echo 1; echo 2 >&2; echo 3; echo 4 >&2"));
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->out, "1\n2\n3\n4\n");
  EXPECT_EQ(out->err, "");
  EXPECT_TRUE(out->status.success()) << to_string(out->status);
}

TEST(ProcessTest, SeparateStreamsGoToTheirOwnPipes) {
  auto out = run_process(shell("echo 1; echo 2 >&2; echo 3; echo 4 >&2", output_mode::separate));
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->out, "1\n3\n");
  EXPECT_EQ(out->err, "2\n4\n");
}

TEST(ProcessTest, PumpTellsWhichStreamEachChunkCameFrom) {
  auto p = process::spawn(shell("printf out; printf err >&2", output_mode::separate));
  ASSERT_TRUE(p) << p.error().message;
  std::string out, err;
  auto pumped = p->pump([&](output_stream s, std::string_view chunk) {
    ASSERT_FALSE(chunk.empty());
    (s == output_stream::out ? out : err).append(chunk);
  });
  ASSERT_TRUE(pumped) << pumped.error().message;
  EXPECT_EQ(*pumped, pump_status::eof);
  EXPECT_EQ(out, "out");
  EXPECT_EQ(err, "err");
  // After eof, pump returns eof at once.
  EXPECT_EQ(*p->pump([](output_stream, std::string_view) {}), pump_status::eof);
}

TEST(ProcessTest, OnlyTheGivenEnvironmentReachesTheChild) {
  ::setenv("PANTRY_PROCESS_TEST_HOST_ONLY", "leaked", 1);
  spawn_options o;
  o.program = "/usr/bin/env";
  o.env = {"A=1", "B=two words"};
  auto out = run_process(o);
  ::unsetenv("PANTRY_PROCESS_TEST_HOST_ONLY");
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->out, "A=1\nB=two words\n");
}

TEST(ProcessTest, EmptyEnvironmentIsEmpty) {
  spawn_options o;
  o.program = "/usr/bin/env";
  auto out = run_process(o);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->out, "");
}

TEST(ProcessTest, ArgumentsArePassedAsTheyAre) {
  spawn_options o;
  o.program = "/usr/bin/printf";
  o.args = {"[%s]", "a b", "", "$HOME", "'\""};
  auto out = run_process(o);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->out, "[a b][][$HOME]['\"]");
}

TEST(ProcessTest, ExitCodeIsPassedThrough) {
  auto out = run_process(shell("exit 3"));
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_TRUE(out->status.exited());
  EXPECT_EQ(out->status.code, 3);
  EXPECT_FALSE(out->status.success());
  EXPECT_EQ(to_string(out->status), "exit code 3");
}

TEST(ProcessTest, DeathBySignalIsReported) {
  auto out = run_process(shell("kill -9 $$"));
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_FALSE(out->status.exited());
  EXPECT_EQ(out->status.signal, SIGKILL);
  EXPECT_THAT(to_string(out->status), HasSubstr("killed by signal 9"));
}

TEST(ProcessTest, RelativeProgramIsRefused) {
  spawn_options o;
  o.program = "sh";
  auto p = process::spawn(o);
  ASSERT_FALSE(p);
  EXPECT_TRUE(p.error().is(errc::invalid_argument)) << p.error().message;
}

TEST(ProcessTest, MissingProgramIsNotFound) {
  spawn_options o;
  o.program = "/nonexistent/program";
  auto p = process::spawn(o);
  ASSERT_FALSE(p);
  EXPECT_TRUE(p.error().is(errc::not_found)) << p.error().message;
  EXPECT_THAT(p.error().message, HasSubstr("/nonexistent/program"));
}

TEST(ProcessTest, NulByteInAnArgumentIsRefused) {
  spawn_options o = shell(std::string("echo a\0b", 8));
  auto p = process::spawn(o);
  ASSERT_FALSE(p);
  EXPECT_TRUE(p.error().is(errc::invalid_argument)) << p.error().message;
}

TEST(ProcessTest, NoDescriptorOfTheCallerLeaksIntoTheChild) {
  // Opened without O_CLOEXEC, as another thread of a server might.
  const int leaky = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leaky, 0);
  spawn_options o;
  o.program = "/bin/ls";
  o.args = {"/proc/self/fd"};
  auto out = run_process(o);
  ::close(leaky);
  ASSERT_TRUE(out) << out.error().message;
  // 0-2, and 3: the directory ls reads.
  EXPECT_EQ(out->out, "0\n1\n2\n3\n") << "leaky descriptor was " << leaky;
}

TEST(ProcessTest, StdinIsDevNull) {
  spawn_options o;
  o.program = "/bin/cat";
  auto out = run_process(o, 5s);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_FALSE(out->timed_out);
  EXPECT_EQ(out->out, "");
  EXPECT_TRUE(out->status.success());
}

TEST(ProcessTest, WorkingDirectoryIsSet) {
  spawn_options o;
  o.program = "/bin/pwd";
  o.working_dir = "/usr/share";
  auto out = run_process(o);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->out, "/usr/share\n");
}

TEST(ProcessTest, BlockedSignalsOfTheCallerAreNotInherited) {
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, &old), 0);
  auto p = process::spawn(shell("exec sleep 30"));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_TRUE(p->signal(SIGTERM));
  auto s = p->wait_until(process::clock::now() + 10s);
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(*s) << "SIGTERM did not end the child: the caller's mask leaked";
  EXPECT_EQ((*s)->signal, SIGTERM);
}

TEST(ProcessTest, SignalFromAnotherThreadEndsAWait) {
  auto p = process::spawn(shell("exec sleep 30"));
  ASSERT_TRUE(p) << p.error().message;
  const auto start = process::clock::now();
  std::thread killer([&] {
    std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(p->signal(SIGKILL));
  });
  auto s = p->wait();
  killer.join();
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->signal, SIGKILL);
  EXPECT_LT(process::clock::now() - start, 5s);
}

TEST(ProcessTest, SignalAfterTheProcessWasReapedIsHarmless) {
  auto p = process::spawn(shell("exit 0"));
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_TRUE(p->wait());
  EXPECT_TRUE(p->signal(SIGKILL));
  // The status stays what it was.
  auto again = p->wait();
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->success());
}

TEST(ProcessTest, PumpStopsAtTheDeadlineAndGoesOnLater) {
  auto p = process::spawn(shell("echo first; exec sleep 30"));
  ASSERT_TRUE(p) << p.error().message;
  std::string out;
  auto sink = [&](output_stream, std::string_view chunk) { out.append(chunk); };
  const auto start = process::clock::now();
  auto pumped = p->pump(sink, start + 300ms);
  ASSERT_TRUE(pumped) << pumped.error().message;
  EXPECT_EQ(*pumped, pump_status::deadline);
  EXPECT_GE(process::clock::now() - start, 300ms);
  EXPECT_EQ(out, "first\n");
  ASSERT_TRUE(p->signal(SIGKILL));
  pumped = p->pump(sink);
  ASSERT_TRUE(pumped);
  EXPECT_EQ(*pumped, pump_status::eof);
  EXPECT_EQ(p->wait()->signal, SIGKILL);
}

TEST(ProcessTest, PumpReturnsWhenTheInterruptDescriptorIsReadable) {
  const int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(efd, 0);
  auto p = process::spawn(shell("exec sleep 30"));
  ASSERT_TRUE(p) << p.error().message;
  std::thread interrupter([&] {
    std::this_thread::sleep_for(100ms);
    const std::uint64_t one = 1;
    EXPECT_EQ(::write(efd, &one, sizeof one), 8);
  });
  auto pumped = p->pump([](output_stream, std::string_view) {}, std::nullopt, efd);
  interrupter.join();
  ::close(efd);
  ASSERT_TRUE(pumped) << pumped.error().message;
  EXPECT_EQ(*pumped, pump_status::interrupted);
}

TEST(ProcessTest, RunProcessKillsAtTheTimeout) {
  const auto start = process::clock::now();
  auto out = run_process(shell("echo before; exec sleep 30"), 300ms);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_TRUE(out->timed_out);
  EXPECT_EQ(out->status.signal, SIGKILL);
  EXPECT_EQ(out->out, "before\n");
  EXPECT_LT(process::clock::now() - start, 5s);
}

TEST(ProcessTest, ChildHoldingTheOutputOpenDoesNotHangRunProcess) {
  // The shell exits at once; its background child keeps the pipe open for 3 s.
  const auto start = process::clock::now();
  auto out = run_process(shell("sleep 3 & echo done"), 300ms);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_TRUE(out->timed_out);
  EXPECT_TRUE(out->status.success()) << to_string(out->status);
  EXPECT_EQ(out->out, "done\n");
  EXPECT_LT(process::clock::now() - start, 5s);
}

TEST(ProcessTest, RunProcessBoundsWhatItKeeps) {
  auto out = run_process(shell("head -c 100000 /dev/zero"), 10s, 1000);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->out.size(), 1000u);
  EXPECT_TRUE(out->truncated);
  EXPECT_TRUE(out->status.success());
}

TEST(ProcessTest, LargeOutputArrivesWhole) {
  auto out = run_process(shell("head -c 5000000 /dev/zero"), 30s, 10000000);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->out.size(), 5000000u);
  EXPECT_FALSE(out->truncated);
}

TEST(ProcessTest, DestroyingARunningProcessKillsAndReapsIt) {
  pid_t pid = -1;
  {
    auto p = process::spawn(shell("exec sleep 30"));
    ASSERT_TRUE(p) << p.error().message;
    pid = p->pid();
    ASSERT_EQ(::kill(pid, 0), 0);
  }
  // Reaped: not even a zombie is left.
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(ProcessTest, MovedProcessIsOwnedOnce) {
  auto p = process::spawn(shell("exit 7"));
  ASSERT_TRUE(p) << p.error().message;
  process moved = std::move(*p);
  auto s = moved.wait();
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->code, 7);
  EXPECT_FALSE(p->wait());  // the moved-from object holds nothing
}

TEST(ProcessTest, NewProcessGroupIsItsOwn) {
  spawn_options o = shell("cut -d' ' -f5 /proc/$$/stat");
  o.new_process_group = true;
  auto p = process::spawn(o);
  ASSERT_TRUE(p) << p.error().message;
  const pid_t pid = p->pid();
  std::string out;
  ASSERT_TRUE(p->pump([&](output_stream, std::string_view c) { out.append(c); }));
  ASSERT_TRUE(p->wait());
  EXPECT_EQ(std::atoi(out.c_str()), pid) << out;
}

TEST(ProcessTest, SharedOutputPipeEndsWhenEveryWriterClosedIt) {
  auto pipe = output_pipe::create(output_mode::merged);
  ASSERT_TRUE(pipe) << pipe.error().message;
  spawn_options first = shell("echo first");
  first.output_to = &*pipe;
  spawn_options second = shell("sleep 0.2; echo second >&2");
  second.output_to = &*pipe;
  auto a = process::spawn(first);
  auto b = process::spawn(second);
  pipe->close_writers();
  ASSERT_TRUE(a && b);
  // The processes have no output of their own to pump.
  EXPECT_EQ(*a->pump([](output_stream, std::string_view) {}), pump_status::eof);
  std::string out;
  auto pumped = pipe->pump([&](output_stream s, std::string_view chunk) {
    EXPECT_EQ(s, output_stream::out);
    out.append(chunk);
  });
  ASSERT_TRUE(pumped) << pumped.error().message;
  EXPECT_EQ(*pumped, pump_status::eof);
  EXPECT_EQ(out, "first\nsecond\n");
  EXPECT_TRUE(a->wait()->success());
  EXPECT_TRUE(b->wait()->success());
}

TEST(ProcessTest, AdoptedOrphanIsReapedBySubreaper) {
  // As a container's init is: its parent exits, and the kernel reparents it to this process.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  auto out = run_process(shell("sh -c 'sleep 0.3; exit 5' >/dev/null & echo $!"));
  ASSERT_TRUE(out) << out.error().message;
  const pid_t orphan = std::atoi(out->out.c_str());
  ASSERT_GT(orphan, 0) << out->out;
  auto adopted = process::adopt(orphan);
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  ASSERT_TRUE(adopted) << adopted.error().message;
  auto s = adopted->wait();
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->code, 5);
}

TEST(ProcessTest, AdoptedNonChildCanBeSignalledButNotWaitedFor) {
  auto adopted = process::adopt(1);
  ASSERT_TRUE(adopted) << adopted.error().message;
  EXPECT_TRUE(adopted->signal(0));
  auto s = adopted->wait();
  ASSERT_FALSE(s);
  EXPECT_TRUE(s.error().is(errc::not_found)) << s.error().message;
  auto missing = process::adopt(0x3fffffff);
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(errc::not_found)) << missing.error().message;
}

}  // namespace
}  // namespace pantry::orchestrator::runner
