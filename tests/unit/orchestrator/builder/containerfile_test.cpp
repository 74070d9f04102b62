#include "pantry/orchestrator/builder/containerfile.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::string_view kDigest =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::string image() {
  return "python@" + std::string(kDigest);
}

// The file parsed; a failure prints the error.
containerfile parse(std::string_view text) {
  auto r = parse_containerfile(text, "Containerfile");
  EXPECT_TRUE(r.has_value()) << "error: " << (r ? "" : r.error().message) << "\nfor:\n" << text;
  if (!r) return {};
  return std::move(*r);
}

// The message parsing fails with; a success fails the test.
std::string failure(std::string_view text) {
  auto r = parse_containerfile(text, "Containerfile");
  EXPECT_FALSE(r.has_value()) << "parsed, but should not have:\n" << text;
  if (r) return {};
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
  return r.error().message;
}

// The single instruction of a one-stage file "FROM image\n<line>".
instruction only(std::string_view line) {
  const containerfile f = parse("FROM " + image() + "\n" + std::string(line) + "\n");
  EXPECT_EQ(f.stages.size(), 1u);
  if (f.stages.size() != 1 || f.stages[0].instructions.size() != 1) {
    ADD_FAILURE() << "not one instruction: " << line;
    return {};
  }
  return f.stages[0].instructions[0];
}

template <class T>
T only_as(std::string_view line) {
  const instruction in = only(line);
  const T* body = std::get_if<T>(&in.body);
  if (body == nullptr) {
    ADD_FAILURE() << "wrong instruction type (" << in.keyword() << ") for: " << line;
    return {};
  }
  return *body;
}

std::string line_failure(std::string_view line) {
  return failure("FROM " + image() + "\n" + std::string(line) + "\n");
}

using strings = std::vector<std::string>;

// ---- the file as a whole ------------------------------------------------------------------------

TEST(ContainerfileTest, ParsesStagesAndInstructionsWithTheirLines) {
  const containerfile f = parse(
      "# a comment\n"
      "\n"
      "FROM " +
      image() +
      " AS build\n"
      "RUN make\n"
      "\n"
      "FROM scratch\n"
      "COPY --from=build /out /\n");
  EXPECT_EQ(f.file, "Containerfile");
  EXPECT_EQ(f.escape, '\\');
  ASSERT_EQ(f.stages.size(), 2u);
  EXPECT_EQ(f.stages[0].line, 3u);
  EXPECT_EQ(f.stages[0].from.base, image());
  EXPECT_EQ(f.stages[0].from.name, "build");
  EXPECT_EQ(f.stages[0].text, "FROM " + image() + " AS build");
  ASSERT_EQ(f.stages[0].instructions.size(), 1u);
  EXPECT_EQ(f.stages[0].instructions[0].line, 4u);
  EXPECT_EQ(f.stages[0].instructions[0].keyword(), "RUN");
  EXPECT_EQ(f.stages[0].instructions[0].text, "RUN make");
  EXPECT_EQ(f.stages[1].line, 6u);
  EXPECT_EQ(f.stages[1].from.base, "scratch");
  EXPECT_EQ(f.stages[1].from.name, "");
  ASSERT_EQ(f.stages[1].instructions.size(), 1u);
  EXPECT_EQ(f.stages[1].instructions[0].line, 7u);
}

TEST(ContainerfileTest, KeywordsAreCaseInsensitive) {
  const containerfile f = parse("from " + image() + " as Build\nrun make\nCoPy a b\n");
  ASSERT_EQ(f.stages.size(), 1u);
  EXPECT_EQ(f.stages[0].from.name, "build");
  ASSERT_EQ(f.stages[0].instructions.size(), 2u);
  EXPECT_EQ(f.stages[0].instructions[0].keyword(), "RUN");
  EXPECT_EQ(f.stages[0].instructions[1].keyword(), "COPY");
}

TEST(ContainerfileTest, EmptyFileHasNoFrom) {
  EXPECT_EQ(failure(""),
            "Containerfile: no FROM: a Containerfile needs at least one FROM (e.g. FROM "
            "python@sha256:…)");
  EXPECT_THAT(failure("# only a comment\n\n   \n"), StartsWith("Containerfile: no FROM"));
  EXPECT_THAT(failure("ARG VERSION=1\n"), StartsWith("Containerfile: no FROM"));
}

TEST(ContainerfileTest, OnlyArgMayComeBeforeTheFirstFrom) {
  EXPECT_EQ(failure("RUN true\nFROM scratch\n"),
            "Containerfile:1: RUN: comes before any FROM; a Containerfile starts with FROM (only "
            "ARG may come before the first FROM)");
  EXPECT_THAT(failure("\n\nENV A=1\nFROM scratch\n"),
              StartsWith("Containerfile:3: ENV: comes before any FROM"));
  const containerfile f = parse("ARG A=1 B\nARG C\nFROM scratch\nARG A\n");
  ASSERT_EQ(f.global_args.size(), 2u);
  const auto& a = std::get<arg_instruction>(f.global_args[0].body);
  ASSERT_EQ(a.args.size(), 2u);
  EXPECT_EQ(a.args[0].name, "A");
  EXPECT_EQ(a.args[0].value, "1");
  EXPECT_EQ(a.args[1].name, "B");
  EXPECT_EQ(a.args[1].value, std::nullopt);
  EXPECT_EQ(f.global_args[1].line, 2u);
  ASSERT_EQ(f.stages.size(), 1u);
  ASSERT_EQ(f.stages[0].instructions.size(), 1u);
  EXPECT_EQ(f.stages[0].instructions[0].keyword(), "ARG");
}

TEST(ContainerfileTest, UnknownInstructionIsNamed) {
  EXPECT_EQ(line_failure("RUM make"),
            "Containerfile:2: unknown instruction \"RUM\" (pantry knows FROM, RUN, COPY, ADD, ENV, "
            "ARG, WORKDIR, USER, LABEL, ENTRYPOINT, CMD, EXPOSE, SHELL, VOLUME, STOPSIGNAL, "
            "HEALTHCHECK, MAINTAINER)");
}

TEST(ContainerfileTest, OnbuildIsRefusedByName) {
  EXPECT_EQ(line_failure("ONBUILD RUN make"),
            "Containerfile:2: ONBUILD: ONBUILD is not supported by pantry: write the "
            "instructions into each Containerfile that builds on this image");
}

TEST(ContainerfileTest, ErrorsNameTheFileGiven) {
  auto r = parse_containerfile("FROM scratch\nCOPY a\n", "build/Dockerfile.dev");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, StartsWith("build/Dockerfile.dev:2: COPY: "));
}

// ---- lines: comments, continuations, directives, line ends --------------------------------------

TEST(ContainerfileTest, ContinuationLinesJoinAsDockerJoinsThem) {
  // docker's parser test file continueIndent, with a FROM of pantry's liking.
  const containerfile f = parse("FROM " + image() +
                                "\n"
                                "\n"
                                "RUN echo hello\\\n"
                                "  world\\\n"
                                "  goodnight  \\\n"
                                "  moon\\\n"
                                "  light\\\n"
                                "ning\n"
                                "RUN echo hello  \\\n"
                                "  world\n"
                                "RUN echo hello  \\\n"
                                "world\n"
                                "RUN echo hello \\\n"
                                "goodbye\\\n"
                                "frog\n"
                                "RUN echo hello  \\  \n"
                                "world\n"
                                "RUN echo hi \\\n"
                                " \\\n"
                                " world \\\n"
                                "\\\n"
                                " good\\\n"
                                "\\\n"
                                "night\n"
                                "RUN echo goodbye\\\n"
                                "frog\n"
                                "RUN echo good\\\n"
                                "bye\\\n"
                                "frog\n"
                                "\n"
                                "RUN echo hello \\\n"
                                "# this is a comment\n"
                                "\n"
                                "# this is a comment with a blank line surrounding it\n"
                                "\n"
                                "this is some more useful stuff\n");
  ASSERT_EQ(f.stages.size(), 1u);
  strings runs;
  std::vector<std::size_t> lines;
  for (const auto& in : f.stages[0].instructions) {
    runs.push_back(std::get<run_instruction>(in.body).command.args.at(0));
    lines.push_back(in.line);
  }
  EXPECT_EQ(runs, (strings{
                      "echo hello  world  goodnight    moon  lightning",
                      "echo hello    world",
                      "echo hello  world",
                      "echo hello goodbyefrog",
                      "echo hello  world",
                      "echo hi   world  goodnight",
                      "echo goodbyefrog",
                      "echo goodbyefrog",
                      "echo hello this is some more useful stuff",
                  }));
  EXPECT_EQ(lines, (std::vector<std::size_t>{3, 9, 11, 13, 16, 18, 25, 27, 31}));
}

TEST(ContainerfileTest, EscapedEscapeAtLineEndIsNoContinuation) {
  const containerfile f = parse("FROM " + image() + "\nRUN echo a\\\\\nRUN echo b\n");
  ASSERT_EQ(f.stages[0].instructions.size(), 2u);
  EXPECT_EQ(std::get<run_instruction>(f.stages[0].instructions[0].body).command.args[0],
            "echo a\\\\");
}

TEST(ContainerfileTest, ContinuationAtEndOfFileEndsTheInstruction) {
  const containerfile f = parse("FROM " + image() + "\n\nRUN something \\");
  ASSERT_EQ(f.stages[0].instructions.size(), 1u);
  EXPECT_EQ(std::get<run_instruction>(f.stages[0].instructions[0].body).command.args[0],
            "something");
}

TEST(ContainerfileTest, ALineOfOnlyTheEscapeStartsAnInstruction) {
  const containerfile f = parse("FROM " + image() + "\n\\\nRUN true\n");
  ASSERT_EQ(f.stages[0].instructions.size(), 1u);
  EXPECT_EQ(f.stages[0].instructions[0].line, 2u);
  EXPECT_EQ(f.stages[0].instructions[0].text, "RUN true");
  EXPECT_THAT(failure("FROM " + image() + "\n\\\n\n"),
              HasSubstr("Containerfile:2: an instruction is empty"));
}

TEST(ContainerfileTest, CommentsNeedTheirOwnLine) {
  const containerfile f =
      parse("FROM " + image() + "\n  # indented comment\nRUN echo # not a comment\n");
  ASSERT_EQ(f.stages[0].instructions.size(), 1u);
  EXPECT_EQ(std::get<run_instruction>(f.stages[0].instructions[0].body).command.args[0],
            "echo # not a comment");
}

TEST(ContainerfileTest, CrlfLineEndsAndByteOrderMarkAreAccepted) {
  const containerfile f = parse(
      "\xEF\xBB\xBF"
      "FROM " +
      image() + "\r\nRUN echo a \\\r\n  b\r\nENV A=1\r\n");
  ASSERT_EQ(f.stages.size(), 1u);
  EXPECT_EQ(f.stages[0].from.base, image());
  ASSERT_EQ(f.stages[0].instructions.size(), 2u);
  EXPECT_EQ(std::get<run_instruction>(f.stages[0].instructions[0].body).command.args[0],
            "echo a   b");
  EXPECT_EQ(std::get<env_instruction>(f.stages[0].instructions[1].body).variables,
            (std::vector<key_value>{{"A", "1"}}));
  EXPECT_EQ(f.stages[0].instructions[1].line, 4u);
}

TEST(ContainerfileTest, ByteOrderMarkCountsOnlyAtTheStart) {
  EXPECT_THAT(failure("FROM " + image() + "\n\xEF\xBB\xBFRUN true\n"),
              HasSubstr("unknown instruction"));
}

TEST(ContainerfileTest, EscapeDirectiveChangesTheEscapeCharacter) {
  // docker's parser test file escape.
  const containerfile f = parse("#escape = `\n\nFROM " + image() +
                                "\nLABEL maintainer foo@bar.com\nENV GOPATH `\n\\go\n");
  EXPECT_EQ(f.escape, '`');
  ASSERT_EQ(f.stages[0].instructions.size(), 2u);
  EXPECT_EQ(std::get<label_instruction>(f.stages[0].instructions[0].body).labels,
            (std::vector<key_value>{{"maintainer", "foo@bar.com"}}));
  EXPECT_EQ(std::get<env_instruction>(f.stages[0].instructions[1].body).variables,
            (std::vector<key_value>{{"GOPATH", "\\go"}}));
  EXPECT_EQ(f.stages[0].instructions[1].line, 5u);
}

TEST(ContainerfileTest, EscapeDirectiveAfterACommentIsAComment) {
  // docker's parser test file escape-after-comment.
  const containerfile f = parse(
      "# Comment here. Should not be looking for the following parser directive.\n"
      "# escape = `\n"
      "\n"
      "FROM " +
      image() +
      "\n"
      "ENV GOPATH \\\n"
      "\\go\n");
  EXPECT_EQ(f.escape, '\\');
  EXPECT_EQ(std::get<env_instruction>(f.stages[0].instructions[0].body).variables,
            (std::vector<key_value>{{"GOPATH", "\\go"}}));
}

TEST(ContainerfileTest, DirectivesAfterABlankLineOrAnInstructionAreComments) {
  EXPECT_EQ(parse("\n# escape=`\nFROM " + image() + "\n").escape, '\\');
  EXPECT_EQ(parse("FROM " + image() + "\n# escape=`\nRUN true\n").escape, '\\');
}

TEST(ContainerfileTest, SyntaxAndCheckDirectivesAreIgnored) {
  const containerfile f =
      parse("# syntax=docker/dockerfile:1\n# check=skip=all\n# escape=`\nFROM " + image() + "\n");
  EXPECT_EQ(f.escape, '`');
  EXPECT_EQ(f.stages.size(), 1u);
  // An unknown directive ends the directives: the escape after it is a comment.
  EXPECT_EQ(parse("# foo=bar\n# escape=`\nFROM " + image() + "\n").escape, '\\');
  // With a byte order mark and in any case.
  EXPECT_EQ(parse("\xEF\xBB\xBF# ESCAPE = `\nFROM " + image() + "\n").escape, '`');
}

TEST(ContainerfileTest, BadDirectivesAreErrors) {
  EXPECT_EQ(failure("# escape=x\nFROM scratch\n"),
            "Containerfile:1: invalid escape directive \"x\": the escape character is \\ or ` "
            "(e.g. # escape=`)");
  EXPECT_EQ(failure("# escape=`\n# escape=\\\nFROM scratch\n"),
            "Containerfile:2: only one escape parser directive can be used; remove this one");
  EXPECT_THAT(failure("# syntax=a\n# syntax=b\nFROM scratch\n"),
              HasSubstr("only one syntax parser directive"));
}

TEST(ContainerfileTest, EmptyContinuationLinesAreSkipped) {
  // docker's parser test file escapes (with a FROM pantry accepts).
  const containerfile f = parse("FROM " + image() +
                                "\n"
                                "LABEL maintainer Erik \\\\Hollensbe <erik@hollensbe.org>\\\"\n"
                                "\n"
                                "RUN apt-get \\update && \\\n"
                                "  apt-get \\\"install znc -y\n"
                                "ADD \\conf\\\\\" /.znc\n"
                                "\n"
                                "RUN foo \\\n"
                                "\n"
                                "bar \\\n"
                                "\n"
                                "baz\n"
                                "\n"
                                "CMD [ \"\\/usr\\\\\\\"/bin/znc\", \"-f\", \"-r\" ]\n");
  const auto& in = f.stages[0].instructions;
  ASSERT_EQ(in.size(), 5u);
  EXPECT_EQ(
      std::get<label_instruction>(in[0].body).labels,
      (std::vector<key_value>{{"maintainer", "Erik \\\\Hollensbe <erik@hollensbe.org>\\\""}}));
  EXPECT_EQ(std::get<run_instruction>(in[1].body).command.args[0],
            "apt-get \\update &&   apt-get \\\"install znc -y");
  EXPECT_EQ(std::get<add_instruction>(in[2].body).sources, (strings{"\\conf\\\\\""}));
  EXPECT_EQ(std::get<add_instruction>(in[2].body).destination, "/.znc");
  EXPECT_EQ(std::get<run_instruction>(in[3].body).command.args[0], "foo bar baz");
  EXPECT_EQ(std::get<cmd_instruction>(in[4].body).command,
            (command_line{true, {"/usr\\\"/bin/znc", "-f", "-r"}}));
}

// ---- FROM ---------------------------------------------------------------------------------------

TEST(ContainerfileTest, FromTakesAnImageScratchAndAStageName) {
  EXPECT_EQ(parse("FROM " + image() + "\n").stages[0].from, (from_instruction{image(), "", ""}));
  EXPECT_EQ(parse("FROM scratch AS Empty\n").stages[0].from,
            (from_instruction{"scratch", "", "empty"}));
  EXPECT_EQ(parse("FROM --platform=$BUILDPLATFORM ${BASE} as b-1.x_y\n").stages[0].from,
            (from_instruction{"${BASE}", "$BUILDPLATFORM", "b-1.x_y"}));
}

TEST(ContainerfileTest, FromRefusesBadForms) {
  EXPECT_EQ(failure("FROM\n"),
            "Containerfile:1: FROM: needs an image and optionally a stage name: FROM IMAGE [AS "
            "NAME]");
  EXPECT_THAT(failure("FROM a b\n"), HasSubstr("FROM IMAGE [AS NAME]"));
  EXPECT_THAT(failure("FROM a AS b c\n"), HasSubstr("FROM IMAGE [AS NAME]"));
  EXPECT_EQ(failure("FROM a AS 1st\n"),
            "Containerfile:1: FROM: invalid stage name \"1st\": a letter, then letters, digits, "
            "'-', '_' or '.'");
  EXPECT_THAT(failure("FROM a AS b/c\n"), HasSubstr("invalid stage name \"b/c\""));
  EXPECT_THAT(failure("FROM a AS scratch\n"), HasSubstr("\"scratch\" is no stage name"));
  EXPECT_EQ(failure("FROM a --foo=1\n"),
            "Containerfile:1: FROM: needs an image and optionally a stage name: FROM IMAGE [AS "
            "NAME]");
  EXPECT_EQ(failure("FROM --foo=1 a\n"),
            "Containerfile:1: FROM: unknown flag \"--foo\" (it takes --platform)");
  EXPECT_EQ(failure("FROM --platform a\n"),
            "Containerfile:1: FROM: --platform needs a value (--platform=VALUE)");
}

TEST(ContainerfileTest, DuplicateStageNamesAreRefused) {
  EXPECT_EQ(failure("FROM a AS build\nRUN true\nFROM b AS BUILD\n"),
            "Containerfile:3: FROM: the stage name \"build\" is already used by the stage at "
            "line 1; give each stage its own name");
}

TEST(ContainerfileTest, FindStageByNameInAnyCase) {
  const containerfile f = parse("FROM a AS one\nFROM b\nFROM c AS three\n");
  EXPECT_EQ(find_stage(f, "one").value(), 0u);
  EXPECT_EQ(find_stage(f, "THREE").value(), 2u);
  auto missing = find_stage(f, "two");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(errc::not_found));
  EXPECT_EQ(missing.error().message,
            "Containerfile: no stage is named \"two\" (stages: one, three)");
  EXPECT_THAT(find_stage(parse("FROM a\n"), "x").error().message, HasSubstr("no stage has a name"));
}

// ---- RUN ----------------------------------------------------------------------------------------

TEST(ContainerfileTest, RunShellFormKeepsTheTextAsWritten) {
  const auto run = only_as<run_instruction>("RUN  echo \"a  b\" && \\\n  echo $HOME   ");
  EXPECT_EQ(run.command, (command_line{false, {"echo \"a  b\" &&   echo $HOME"}}));
  EXPECT_EQ(run.network, network_mode::isolated);
}

TEST(ContainerfileTest, RunExecFormIsJson) {
  EXPECT_EQ(only_as<run_instruction>("RUN [\"python3\", \"-c\", \"print(1)\"]").command,
            (command_line{true, {"python3", "-c", "print(1)"}}));
  EXPECT_EQ(only_as<run_instruction>("RUN [ \"a b\" ,\"\\u00e9\\n\" ]").command,
            (command_line{true, {"a b", "\xC3\xA9\n"}}));
}

TEST(ContainerfileTest, InvalidJsonIsTheShellFormAsInDocker) {
  EXPECT_EQ(only_as<run_instruction>("RUN [\"a\", ]").command,
            (command_line{false, {"[\"a\", ]"}}));
  EXPECT_EQ(only_as<run_instruction>("RUN ['a']").command, (command_line{false, {"['a']"}}));
  EXPECT_EQ(only_as<run_instruction>("RUN [\"a\"] && b").command,
            (command_line{false, {"[\"a\"] && b"}}));
  EXPECT_EQ(only_as<run_instruction>("RUN [ -f x ] || touch x").command,
            (command_line{false, {"[ -f x ] || touch x"}}));
}

TEST(ContainerfileTest, JsonThatIsNotAllStringsIsAnError) {
  EXPECT_EQ(line_failure("RUN [\"a\", 1]"),
            "Containerfile:2: RUN: a JSON array (exec form) must hold strings only: \"[\\\"a\\\", "
            "1]\"");
  EXPECT_THAT(line_failure("CMD [[\"a\"]]"), HasSubstr("CMD: a JSON array"));
  EXPECT_THAT(line_failure("COPY [\"a\", null]"), HasSubstr("COPY: a JSON array"));
}

TEST(ContainerfileTest, DeeplyNestedJson) {
  // Valid JSON that is not all strings is an error; past Go's depth limit it is no JSON and so
  // the shell form, as in docker.
  EXPECT_THAT(line_failure("RUN " + std::string(5000, '[') + std::string(5000, ']')),
              HasSubstr("must hold strings only"));
  const std::string deep = std::string(20000, '[') + std::string(20000, ']');
  EXPECT_EQ(only_as<run_instruction>("RUN " + deep).command, (command_line{false, {deep}}));
}

TEST(ContainerfileTest, JsonStringsThatAreNotUtf8GetReplacementCharacters) {
  EXPECT_EQ(only_as<run_instruction>("RUN [\"a\xFFz\"]").command,
            (command_line{true, {"a\xEF\xBF\xBDz"}}));
}

TEST(ContainerfileTest, RunNeedsACommand) {
  EXPECT_EQ(line_failure("RUN"), "Containerfile:2: RUN: needs a command");
  EXPECT_EQ(line_failure("RUN []"), "Containerfile:2: RUN: [] names no command to run");
  EXPECT_EQ(line_failure("RUN --network=host"), "Containerfile:2: RUN: needs a command");
}

TEST(ContainerfileTest, RunNetworkFlag) {
  EXPECT_EQ(only_as<run_instruction>("RUN --network=host apt-get update").network,
            network_mode::host);
  EXPECT_EQ(only_as<run_instruction>("RUN --network=none true").network, network_mode::none);
  EXPECT_EQ(only_as<run_instruction>("RUN --network=isolated true").network,
            network_mode::isolated);
  EXPECT_EQ(only_as<run_instruction>("RUN --network=default true").network, network_mode::isolated);
  EXPECT_EQ(only_as<run_instruction>("RUN --network=\"host\" true").network, network_mode::host);
  EXPECT_EQ(line_failure("RUN --network=bridge true"),
            "Containerfile:2: RUN: --network=bridge is not a network pantry gives a step: use "
            "isolated (the default: only pantry's read-only routes answer), none or host");
  EXPECT_EQ(line_failure("RUN --network true"),
            "Containerfile:2: RUN: --network needs a value (--network=VALUE)");
  EXPECT_EQ(line_failure("RUN --network=host --network=none true"),
            "Containerfile:2: RUN: --network is given twice");
}

TEST(ContainerfileTest, FlagsEndAtTheFirstOtherWordOrAtDoubleDash) {
  EXPECT_EQ(only_as<run_instruction>("RUN -- --network=host").command.args[0], "--network=host");
  EXPECT_EQ(only_as<run_instruction>("RUN echo --network=host").command.args[0],
            "echo --network=host");
  EXPECT_EQ(only_as<run_instruction>("RUN -x").command.args[0], "-x");
}

TEST(ContainerfileTest, RunMountSecurityAndDeviceAreRefusedByName) {
  EXPECT_EQ(line_failure("RUN --mount=type=cache,target=/root/.cache pip install x"),
            "Containerfile:2: RUN: --mount is not supported by pantry: COPY the files the step "
            "needs into the image (pip downloads go through pantry's cache already)");
  EXPECT_EQ(line_failure("RUN --security=insecure true"),
            "Containerfile:2: RUN: --security is not supported by pantry: steps never run "
            "privileged");
  EXPECT_THAT(line_failure("RUN --device=/dev/fuse true"),
              HasSubstr("RUN: --device is not supported by pantry"));
  EXPECT_EQ(line_failure("RUN --frobnicate=1 true"),
            "Containerfile:2: RUN: unknown flag \"--frobnicate\" (it takes --network)");
}

TEST(ContainerfileTest, HeredocsAreRefusedByName) {
  const std::string message =
      "Containerfile:2: RUN: heredocs (<<EOF) are not supported by pantry: put the script or "
      "file in the build context and COPY it, or write the command on one line";
  EXPECT_EQ(line_failure("RUN <<EOF\necho hi\nEOF"), message);
  EXPECT_EQ(line_failure("RUN cat <<-EOT > /x"), message);
  EXPECT_EQ(line_failure("RUN python3 << 'EOF'"), message);
  EXPECT_EQ(line_failure("RUN 3<<EOF cat"), message);
  EXPECT_THAT(line_failure("COPY <<EOF /etc/x"), HasSubstr("COPY: heredocs (<<EOF)"));
  EXPECT_THAT(line_failure("ADD <<EOF /etc/x"), HasSubstr("ADD: heredocs (<<EOF)"));
  // Not heredocs, as in docker: a here-string, quoted, an empty name, the exec form.
  EXPECT_EQ(only_as<run_instruction>("RUN cat <<< word").command.args[0], "cat <<< word");
  EXPECT_EQ(only_as<run_instruction>("RUN echo '<<EOF'").command.args[0], "echo '<<EOF'");
  EXPECT_EQ(only_as<run_instruction>("RUN echo a<<b").command.args[0], "echo a<<b");
  EXPECT_EQ(only_as<run_instruction>("RUN cat <<''").command.args[0], "cat <<''");
  EXPECT_EQ(only_as<run_instruction>("RUN [\"cat\", \"<<EOF\"]").command,
            (command_line{true, {"cat", "<<EOF"}}));
}

// ---- COPY and ADD -------------------------------------------------------------------------------

TEST(ContainerfileTest, CopyTakesSourcesAndADestination) {
  const auto copy = only_as<copy_instruction>("COPY  a b/*.py  \"c\"  /app/");
  EXPECT_EQ(copy.sources, (strings{"a", "b/*.py", "\"c\""}));
  EXPECT_EQ(copy.destination, "/app/");
  EXPECT_EQ(copy.chown, "");
  EXPECT_EQ(copy.chmod, "");
  EXPECT_EQ(copy.from.from, copy_from::kind::context);
  const auto json = only_as<copy_instruction>("COPY [\"my file\", \"/my dir/\"]");
  EXPECT_EQ(json.sources, (strings{"my file"}));
  EXPECT_EQ(json.destination, "/my dir/");
}

TEST(ContainerfileTest, CopyFlags) {
  const auto copy = only_as<copy_instruction>("COPY --chown=app:app --chmod=0644 a /b");
  EXPECT_EQ(copy.chown, "app:app");
  EXPECT_EQ(copy.chmod, "0644");
  EXPECT_EQ(line_failure("COPY --chown a /b"),
            "Containerfile:2: COPY: --chown needs a value (--chown=VALUE)");
  EXPECT_EQ(line_failure("COPY --chown= a /b"),
            "Containerfile:2: COPY: --chown needs a value (--chown=VALUE)");
  EXPECT_EQ(line_failure("COPY --chmod=1 --chmod=2 a /b"),
            "Containerfile:2: COPY: --chmod is given twice");
  EXPECT_EQ(line_failure("COPY --own=1 a /b"),
            "Containerfile:2: COPY: unknown flag \"--own\" (it takes --from, --chown, --chmod)");
}

TEST(ContainerfileTest, CopyNeedsASourceAndADestination) {
  EXPECT_EQ(line_failure("COPY a"),
            "Containerfile:2: COPY: needs a source and a destination (COPY SRC… DEST)");
  EXPECT_EQ(line_failure("COPY"),
            "Containerfile:2: COPY: needs a source and a destination (COPY SRC… DEST)");
  EXPECT_THAT(line_failure("COPY [\"a\"]"), HasSubstr("needs a source and a destination"));
  EXPECT_THAT(line_failure("ADD a"), HasSubstr("ADD: needs a source and a destination"));
}

TEST(ContainerfileTest, CopyFlagsPantryRefuses) {
  EXPECT_EQ(line_failure("COPY --link a /b"),
            "Containerfile:2: COPY: --link is not supported by pantry: pantry's layers do not "
            "depend on what is below them anyway; drop --link");
  EXPECT_THAT(line_failure("COPY --parents a/b /c"), HasSubstr("--parents is not supported"));
  EXPECT_THAT(line_failure("COPY --exclude=*.pyc . /c"),
              HasSubstr("--exclude is not supported by pantry: list what to leave out in "
                        ".containerignore"));
}

TEST(ContainerfileTest, CopyFromAnEarlierStageByNameOrIndex) {
  const containerfile f = parse(
      "FROM a AS build\n"
      "FROM b AS test\n"
      "FROM c\n"
      "COPY --from=build /a /a\n"
      "COPY --from=TEST /b /b\n"
      "COPY --from=1 /c /c\n"
      "COPY --from=0 /d /d\n");
  const auto& in = f.stages[2].instructions;
  ASSERT_EQ(in.size(), 4u);
  const auto from = [&](std::size_t i) { return std::get<copy_instruction>(in[i].body).from; };
  EXPECT_EQ(from(0).from, copy_from::kind::stage);
  EXPECT_EQ(from(0).stage, 0u);
  EXPECT_EQ(from(0).written, "build");
  EXPECT_EQ(from(1).stage, 1u);
  EXPECT_EQ(from(2).stage, 1u);
  EXPECT_EQ(from(3).stage, 0u);
}

TEST(ContainerfileTest, CopyFromAnImage) {
  const auto copy = only_as<copy_instruction>("COPY --from=busybox@" + std::string(kDigest) +
                                              " /bin/busybox /bin/");
  EXPECT_EQ(copy.from.from, copy_from::kind::image);
  EXPECT_EQ(copy.from.image, (image_reference{"busybox", "", std::string(kDigest)}));
  const auto tagged = only_as<copy_instruction>("COPY --from=nginx:1.25 /etc/nginx /etc/nginx");
  EXPECT_EQ(tagged.from.image, (image_reference{"nginx", "1.25", ""}));
  EXPECT_THAT(line_failure("COPY --from=Nginx:1 /a /a"),
              HasSubstr("COPY: --from=Nginx:1: \"Nginx:1\" is not an image reference"));
}

TEST(ContainerfileTest, CopyFromAnUnknownStageIsNamed) {
  EXPECT_EQ(failure("FROM a AS build\nFROM b AS test\nFROM c\nCOPY --from=buld /x /x\n"),
            "Containerfile:4: COPY: --from=buld names no stage defined before it (stages: build, "
            "test); to copy from an image, name it by digest: --from=NAME@sha256:…");
  EXPECT_THAT(failure("FROM a\nCOPY --from=x /x /x\n"), HasSubstr("(no named stages)"));
  EXPECT_EQ(failure("FROM a\nCOPY --from=later /x /x\nFROM b AS later\n"),
            "Containerfile:2: COPY: --from=later names a stage defined later (line 3); a stage "
            "copies only from stages before it");
  EXPECT_EQ(failure("FROM a AS self\nCOPY --from=self /x /x\n"),
            "Containerfile:2: COPY: --from=self names the stage it is in; a stage copies only "
            "from stages before it");
  EXPECT_EQ(failure("FROM a\nFROM b\nCOPY --from=1 /x /x\n"),
            "Containerfile:3: COPY: --from=1 names stage 1, but only 1 stage(s) are defined "
            "before this one (a stage copies only from stages before it, counting from 0)");
  EXPECT_THAT(failure("FROM a\nCOPY --from=99999999999 /x /x\n"), HasSubstr("names stage"));
}

TEST(ContainerfileTest, CopyFromRefusesVariables) {
  EXPECT_EQ(failure("ARG S=build\nFROM a AS build\nFROM b\nCOPY --from=$S /x /x\n"),
            "Containerfile:4: COPY: --from=$S holds a variable; docker and pantry do not "
            "substitute in --from: define a stage with FROM ${…} AS NAME and use --from=NAME");
}

TEST(ContainerfileTest, AddTakesLocalSources) {
  const auto add = only_as<add_instruction>("ADD --chown=1000 --chmod=755 app.tar.gz /opt/");
  EXPECT_EQ(add.sources, (strings{"app.tar.gz"}));
  EXPECT_EQ(add.destination, "/opt/");
  EXPECT_EQ(add.chown, "1000");
  EXPECT_EQ(add.chmod, "755");
  EXPECT_EQ(only_as<add_instruction>("ADD [\"a b\", \"/c\"]").sources, (strings{"a b"}));
}

TEST(ContainerfileTest, AddRefusesUrlsByName) {
  EXPECT_EQ(line_failure("ADD https://example.com/app.tar.gz /opt/"),
            "Containerfile:2: ADD: \"https://example.com/app.tar.gz\" is a URL; pantry's ADD "
            "takes local files and archives only: download it in a RUN --network=host step, or "
            "put it in the build context");
  EXPECT_THAT(line_failure("ADD a http://x/y /opt/"), HasSubstr("\"http://x/y\" is a URL"));
  EXPECT_THAT(line_failure("ADD git@github.com:org/repo.git /src"), HasSubstr("is a URL"));
  EXPECT_THAT(line_failure("ADD [\"git://host/repo\", \"/src\"]"), HasSubstr("is a URL"));
  EXPECT_EQ(only_as<add_instruction>("ADD c:d.tar /x").sources, (strings{"c:d.tar"}));
}

TEST(ContainerfileTest, AddFlagsPantryRefuses) {
  EXPECT_EQ(line_failure("ADD --checksum=sha256:abc https://x/y /y"),
            "Containerfile:2: ADD: --checksum is not supported by pantry: pantry's ADD takes "
            "local files only, whose content is hashed anyway");
  EXPECT_THAT(line_failure("ADD --keep-git-dir=true git@github.com:a/b.git /b"),
              HasSubstr("--keep-git-dir is not supported by pantry"));
  EXPECT_THAT(line_failure("ADD --unpack=false a.tar /b"), HasSubstr("--unpack is not supported"));
  EXPECT_THAT(line_failure("ADD --link a /b"), HasSubstr("--link is not supported"));
  EXPECT_THAT(line_failure("ADD --exclude=x a /b"), HasSubstr("--exclude is not supported"));
  EXPECT_THAT(line_failure("ADD --from=x a /b"), HasSubstr("unknown flag \"--from\""));
}

// ---- ENV, LABEL, ARG ----------------------------------------------------------------------------
TEST(ContainerfileTest, EnvPairsKeepTheirQuotesUntilSubstitution) {
  // docker's parser test file env.
  auto env = [](std::string_view line) { return only_as<env_instruction>(line).variables; };
  using kvs = std::vector<key_value>;
  EXPECT_EQ(env("ENV name value"), (kvs{{"name", "value"}}));
  EXPECT_EQ(env("ENV name=value"), (kvs{{"name", "value"}}));
  EXPECT_EQ(env("ENV name=value name2=value2"), (kvs{{"name", "value"}, {"name2", "value2"}}));
  EXPECT_EQ(env("ENV name=\"value value1\""), (kvs{{"name", "\"value value1\""}}));
  EXPECT_EQ(env("ENV name=value\\ value2"), (kvs{{"name", "value\\ value2"}}));
  EXPECT_EQ(env("ENV name=\"value'quote space'value2\""),
            (kvs{{"name", "\"value'quote space'value2\""}}));
  EXPECT_EQ(env("ENV name='value\"double quote\"value2'"),
            (kvs{{"name", "'value\"double quote\"value2'"}}));
  EXPECT_EQ(env("ENV name=value\\ value2 name2=value2\\ value3"),
            (kvs{{"name", "value\\ value2"}, {"name2", "value2\\ value3"}}));
  EXPECT_EQ(env("ENV name=\"a\\\"b\""), (kvs{{"name", "\"a\\\"b\""}}));
  EXPECT_EQ(env("ENV name=\"a\\'b\""), (kvs{{"name", "\"a\\'b\""}}));
  EXPECT_EQ(env("ENV name='a\\'b'"), (kvs{{"name", "'a\\'b'"}}));
  EXPECT_EQ(env("ENV name='a\\'b''"), (kvs{{"name", "'a\\'b''"}}));
  EXPECT_EQ(env("ENV name='a\\\"b'"), (kvs{{"name", "'a\\\"b'"}}));
  EXPECT_EQ(env("ENV name=\"''\""), (kvs{{"name", "\"''\""}}));
  EXPECT_EQ(env("ENV name=value \\\n"
                "    name1=value1 \\\n"
                "    name2=\"value2a \\\n"
                "           value2b\" \\\n"
                "    name3=\"value3a\\n\\\"value3b\\\"\" \\\n"
                "\tname4=\"value4a\\\\nvalue4b\" \\"),
            (kvs{{"name", "value"},
                 {"name1", "value1"},
                 {"name2", "\"value2a            value2b\""},
                 {"name3", "\"value3a\\n\\\"value3b\\\"\""},
                 {"name4", "\"value4a\\\\nvalue4b\""}}));
}

TEST(ContainerfileTest, LegacyEnvTakesTheRestOfTheLine) {
  EXPECT_EQ(only_as<env_instruction>("ENV PATH  /a b  c").variables,
            (std::vector<key_value>{{"PATH", "/a b  c"}}));
  EXPECT_EQ(only_as<env_instruction>("ENV A B=C").variables,
            (std::vector<key_value>{{"A", "B=C"}}));
}

TEST(ContainerfileTest, EnvErrors) {
  EXPECT_EQ(line_failure("ENV"), "Containerfile:2: ENV: needs at least one NAME=VALUE");
  EXPECT_EQ(line_failure("ENV A"), "Containerfile:2: ENV: \"A\" has no value: write NAME=VALUE");
  EXPECT_EQ(line_failure("ENV A=1 B"),
            "Containerfile:2: ENV: no '=' in \"B\": write NAME=VALUE (quote values with spaces)");
  EXPECT_EQ(line_failure("ENV =1"), "Containerfile:2: ENV: a name is blank in \"=1\"");
  EXPECT_EQ(line_failure("ENV --x=1 A=1"),
            "Containerfile:2: ENV: unknown flag \"--x\" (it takes no flags)");
}

TEST(ContainerfileTest, Labels) {
  EXPECT_EQ(only_as<label_instruction>("LABEL a=1 \"b c\"=\"d e\" org.x.y=z").labels,
            (std::vector<key_value>{{"a", "1"}, {"\"b c\"", "\"d e\""}, {"org.x.y", "z"}}));
  EXPECT_EQ(only_as<label_instruction>("LABEL version 1.0 beta").labels,
            (std::vector<key_value>{{"version", "1.0 beta"}}));
  EXPECT_EQ(line_failure("LABEL"), "Containerfile:2: LABEL: needs at least one NAME=VALUE");
}

TEST(ContainerfileTest, ArgsWithAndWithoutDefaults) {
  const auto arg = only_as<arg_instruction>("ARG A B=2 C=\"x y\" D=");
  ASSERT_EQ(arg.args.size(), 4u);
  EXPECT_EQ(arg.args[0], (arg_declaration{"A", std::nullopt}));
  EXPECT_EQ(arg.args[1], (arg_declaration{"B", "2"}));
  EXPECT_EQ(arg.args[2], (arg_declaration{"C", "\"x y\""}));
  EXPECT_EQ(arg.args[3], (arg_declaration{"D", ""}));
  EXPECT_EQ(line_failure("ARG"), "Containerfile:2: ARG: needs a name (ARG NAME[=DEFAULT])");
  EXPECT_EQ(line_failure("ARG =1"), "Containerfile:2: ARG: a name is blank in \"=1\"");
  EXPECT_THAT(line_failure("ARG --x A"), HasSubstr("ARG: unknown flag \"--x\""));
}

// ---- the one-argument instructions --------------------------------------------------------------

TEST(ContainerfileTest, WorkdirUserStopsignalMaintainerTakeTheRestOfTheLine) {
  EXPECT_EQ(only_as<workdir_instruction>("WORKDIR /my dir").path, "/my dir");
  EXPECT_EQ(only_as<user_instruction>("USER app:app").user, "app:app");
  EXPECT_EQ(only_as<stopsignal_instruction>("STOPSIGNAL SIGINT").signal, "SIGINT");
  EXPECT_EQ(only_as<maintainer_instruction>("MAINTAINER Jo <jo@example.com>").maintainer,
            "Jo <jo@example.com>");
  EXPECT_EQ(line_failure("WORKDIR"), "Containerfile:2: WORKDIR: needs exactly one argument");
  EXPECT_EQ(line_failure("USER"), "Containerfile:2: USER: needs exactly one argument");
  EXPECT_EQ(line_failure("STOPSIGNAL"), "Containerfile:2: STOPSIGNAL: needs exactly one argument");
  EXPECT_EQ(line_failure("MAINTAINER"), "Containerfile:2: MAINTAINER: needs exactly one argument");
}

// ---- CMD, ENTRYPOINT, SHELL ---------------------------------------------------------------------

TEST(ContainerfileTest, CmdJsonForms) {
  // docker's parser test file json.
  auto cmd = [](std::string_view line) { return only_as<cmd_instruction>(line).command; };
  EXPECT_EQ(cmd("CMD []"), (command_line{true, {}}));
  EXPECT_EQ(cmd("CMD [\"\"]"), (command_line{true, {""}}));
  EXPECT_EQ(cmd("CMD [\"a\"]"), (command_line{true, {"a"}}));
  EXPECT_EQ(cmd("CMD [\"a\",\"b\"]"), (command_line{true, {"a", "b"}}));
  EXPECT_EQ(cmd("CMD [ \"a\", \"b\" ]"), (command_line{true, {"a", "b"}}));
  EXPECT_EQ(cmd("CMD [\t\"a\",\t\"b\"\t]"), (command_line{true, {"a", "b"}}));
  EXPECT_EQ(cmd("CMD\t[\t\"a\",\t\"b\"\t]\t"), (command_line{true, {"a", "b"}}));
  EXPECT_EQ(
      cmd("CMD [\"abc 123\", \"♥\", \"☃\", \"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000\"]"),
      (command_line{true, {"abc 123", "♥", "☃", std::string("\" \\ / \b \f \n \r \t \0", 17)}}));
}

TEST(ContainerfileTest, CmdAndEntrypointShellForm) {
  EXPECT_EQ(only_as<cmd_instruction>("CMD python3 -m app").command,
            (command_line{false, {"python3 -m app"}}));
  EXPECT_EQ(only_as<entrypoint_instruction>("ENTRYPOINT [\"/bin/app\"]").command,
            (command_line{true, {"/bin/app"}}));
  EXPECT_EQ(only_as<entrypoint_instruction>("ENTRYPOINT []").command, (command_line{true, {}}));
  EXPECT_EQ(line_failure("CMD"), "Containerfile:2: CMD: needs a command (CMD [] clears it)");
  EXPECT_EQ(line_failure("ENTRYPOINT"),
            "Containerfile:2: ENTRYPOINT: needs a command (ENTRYPOINT [] clears it)");
}

TEST(ContainerfileTest, ShellIsJsonOnly) {
  EXPECT_EQ(
      only_as<shell_instruction>("SHELL [\"/bin/bash\", \"-eo\", \"pipefail\", \"-c\"]").shell,
      (strings{"/bin/bash", "-eo", "pipefail", "-c"}));
  EXPECT_EQ(line_failure("SHELL /bin/bash -c"),
            "Containerfile:2: SHELL: needs the shell as a JSON array, e.g. SHELL [\"/bin/bash\", "
            "\"-c\"], not \"/bin/bash -c\"");
  EXPECT_EQ(line_failure("SHELL []"), "Containerfile:2: SHELL: [] names no shell");
  EXPECT_THAT(line_failure("SHELL"), HasSubstr("SHELL: needs the shell as a JSON array"));
}

// ---- EXPOSE, VOLUME -----------------------------------------------------------------------------
TEST(ContainerfileTest, ExposeKeepsTheWordsSorted) {
  EXPECT_EQ(only_as<expose_instruction>("EXPOSE 8080/udp 80 ${PORT}").ports,
            (strings{"${PORT}", "80", "8080/udp"}));
  EXPECT_EQ(line_failure("EXPOSE"),
            "Containerfile:2: EXPOSE: needs at least one port (EXPOSE 8080 or 8080/udp)");
}

TEST(ContainerfileTest, VolumeListOrJson) {
  EXPECT_EQ(only_as<volume_instruction>("VOLUME /data /cache").paths, (strings{"/data", "/cache"}));
  EXPECT_EQ(only_as<volume_instruction>("VOLUME [\"/my data\", \" /x \"]").paths,
            (strings{"/my data", "/x"}));
  EXPECT_EQ(line_failure("VOLUME"), "Containerfile:2: VOLUME: needs at least one path");
  EXPECT_EQ(line_failure("VOLUME [\"\"]"), "Containerfile:2: VOLUME: a path is empty");
  EXPECT_EQ(line_failure("VOLUME [\"/a\", \"  \"]"), "Containerfile:2: VOLUME: a path is empty");
}

// ---- HEALTHCHECK --------------------------------------------------------------------------------
TEST(ContainerfileTest, HealthcheckNone) {
  const auto h = only_as<healthcheck_instruction>("HEALTHCHECK none");
  EXPECT_TRUE(h.none);
  EXPECT_TRUE(h.test.args.empty());
  EXPECT_EQ(line_failure("HEALTHCHECK NONE x"),
            "Containerfile:2: HEALTHCHECK: NONE takes no arguments");
  EXPECT_EQ(line_failure("HEALTHCHECK --retries=1 NONE"),
            "Containerfile:2: HEALTHCHECK: NONE takes no options");
}

TEST(ContainerfileTest, HealthcheckCmdWithOptions) {
  const auto h = only_as<healthcheck_instruction>(
      "HEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=0 --start-interval=500ms "
      "--retries=3 CMD curl -f http://localhost/ || exit 1");
  EXPECT_FALSE(h.none);
  EXPECT_EQ(h.test, (command_line{false, {"curl -f http://localhost/ || exit 1"}}));
  EXPECT_EQ(h.interval, std::chrono::seconds(90));
  EXPECT_EQ(h.timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(h.start_period, std::chrono::nanoseconds(0));
  EXPECT_EQ(h.start_interval, std::chrono::milliseconds(500));
  EXPECT_EQ(h.retries, 3);
  const auto exec = only_as<healthcheck_instruction>("HEALTHCHECK cmd [\"/bin/check\", \"-q\"]");
  EXPECT_EQ(exec.test, (command_line{true, {"/bin/check", "-q"}}));
  EXPECT_EQ(exec.interval, std::chrono::nanoseconds(0));
  EXPECT_EQ(only_as<healthcheck_instruction>("HEALTHCHECK --interval=1h2m3.5s CMD x").interval,
            std::chrono::hours(1) + std::chrono::minutes(2) + std::chrono::milliseconds(3500));
  EXPECT_EQ(only_as<healthcheck_instruction>("HEALTHCHECK --timeout=0s CMD x").timeout,
            std::chrono::nanoseconds(0));
}

TEST(ContainerfileTest, HealthcheckErrors) {
  EXPECT_EQ(line_failure("HEALTHCHECK"), "Containerfile:2: HEALTHCHECK: needs NONE or CMD COMMAND");
  EXPECT_EQ(line_failure("HEALTHCHECK RUN x"),
            "Containerfile:2: HEALTHCHECK: unknown type \"RUN\": use CMD COMMAND or NONE");
  EXPECT_EQ(line_failure("HEALTHCHECK CMD"), "Containerfile:2: HEALTHCHECK: CMD needs a command");
  EXPECT_EQ(line_failure("HEALTHCHECK CMD []"),
            "Containerfile:2: HEALTHCHECK: CMD [] names no command");
  EXPECT_EQ(
      line_failure("HEALTHCHECK --interval=5 CMD x"),
      "Containerfile:2: HEALTHCHECK: --interval=5 is not a duration (e.g. 30s, 1m30s, 500ms)");
  EXPECT_THAT(line_failure("HEALTHCHECK --timeout=1d CMD x"), HasSubstr("is not a duration"));
  EXPECT_THAT(line_failure("HEALTHCHECK --timeout=.s CMD x"), HasSubstr("is not a duration"));
  EXPECT_EQ(line_failure("HEALTHCHECK --timeout=999us CMD x"),
            "Containerfile:2: HEALTHCHECK: --timeout=999us is less than 1ms");
  EXPECT_THAT(line_failure("HEALTHCHECK --timeout=-1s CMD x"), HasSubstr("is less than 1ms"));
  EXPECT_EQ(line_failure("HEALTHCHECK --retries=-1 CMD x"),
            "Containerfile:2: HEALTHCHECK: --retries=-1 cannot be negative");
  EXPECT_THAT(line_failure("HEALTHCHECK --retries=x CMD x"), HasSubstr("is not a number"));
  EXPECT_THAT(line_failure("HEALTHCHECK --retries=99999999999 CMD x"), HasSubstr("--retries"));
  EXPECT_THAT(line_failure("HEALTHCHECK --every=1s CMD x"), HasSubstr("unknown flag \"--every\""));
}

}  // namespace
}  // namespace pantry::orchestrator::builder
