#include "pantry/registry/pypi/names.h"

#include <gtest/gtest.h>

#include <ostream>

namespace pantry::registry::pypi {

void PrintTo(const dist_filename& d, std::ostream* os) {
  *os << "{project=\"" << d.project << "\", version=\"" << d.version << "\", wheel=" << d.wheel
      << "}";
}

namespace {

TEST(PypiNamesTest, ParsesWheelNames) {
  EXPECT_EQ(parse_dist_filename("pip-23.0.1-py3-none-any.whl", "pip"),
            (dist_filename{"pip", "23.0.1", true}));
  EXPECT_EQ(parse_dist_filename("numpy-1.26.0-cp311-cp311-manylinux_2_17_x86_64.whl", ""),
            (dist_filename{"numpy", "1.26.0", true}));
  // A build tag makes six parts.
  EXPECT_EQ(parse_dist_filename("foo_bar-1.0-1-py3-none-any.whl", "Foo.Bar"),
            (dist_filename{"foo_bar", "1.0", true}));
  EXPECT_EQ(parse_dist_filename("torch-2.0.0+cpu-cp311-cp311-linux_x86_64.whl", "torch"),
            (dist_filename{"torch", "2.0.0+cpu", true}));
  EXPECT_EQ(parse_dist_filename("pip-23.0.1-py3-none-any.whl", "setuptools"), std::nullopt);
  EXPECT_EQ(parse_dist_filename("pip-23.0.1-any.whl", ""), std::nullopt);
  EXPECT_EQ(parse_dist_filename("pip-23.0.1--py3-none-any.whl", ""), std::nullopt);
  EXPECT_EQ(parse_dist_filename("a-b-c-d-e-f-g.whl", ""), std::nullopt);
}

TEST(PypiNamesTest, ParsesSdistAndLegacyNamesWithTheProjectName) {
  EXPECT_EQ(parse_dist_filename("python-dateutil-2.8.2.tar.gz", "python_dateutil"),
            (dist_filename{"python-dateutil", "2.8.2", false}));
  EXPECT_EQ(parse_dist_filename("Pantry_Demo.Util-1.0.zip", "pantry-demo-util"),
            (dist_filename{"Pantry_Demo.Util", "1.0", false}));
  EXPECT_EQ(parse_dist_filename("requests-0.2.0.TAR.GZ", "requests"),
            (dist_filename{"requests", "0.2.0", false}));
  EXPECT_EQ(parse_dist_filename("setuptools-0.6c11-py2.7.egg", "setuptools"),
            (dist_filename{"setuptools", "0.6c11", false}));
  // Without the project name, the version follows the last '-'.
  EXPECT_EQ(parse_dist_filename("python-dateutil-2.8.2.tar.gz", ""),
            (dist_filename{"python-dateutil", "2.8.2", false}));
  EXPECT_EQ(parse_dist_filename("requests-2.31.0.tar.gz", "urllib3"), std::nullopt);
  EXPECT_EQ(parse_dist_filename("requests.tar.gz", "requests"), std::nullopt);
  EXPECT_EQ(parse_dist_filename("requests-.tar.gz", "requests"), std::nullopt);
  EXPECT_EQ(parse_dist_filename("README.txt", "readme"), std::nullopt);
}

TEST(PypiNamesTest, ProjectOfAFileLocationFollowsTheWheelAndSdistRules) {
  EXPECT_EQ(
      project_of_file_location("files.pythonhosted.org/packages/ab/cd/pip-23.0.1-py3-none-any.whl"),
      "pip");
  // A wheel's name is escaped with '_' and may be spelled in any case: normalized.
  EXPECT_EQ(project_of_file_location("h:8080/p/Foo_Bar-1.0-1-py3-none-any.whl"), "foo-bar");
  EXPECT_EQ(project_of_file_location("h/p/zope.interface-6.0-cp311-cp311-linux_x86_64.whl"),
            "zope-interface");
  // pip and S3-backed indexes percent-encode a local version's '+'.
  EXPECT_EQ(project_of_file_location("h/whl/torch-2.0.0%2Bcpu-cp311-cp311-linux_x86_64.whl"),
            "torch");
  EXPECT_EQ(project_of_file_location("h/p/python-dateutil-2.8.2.tar.gz"), "python-dateutil");
  EXPECT_EQ(project_of_file_location("h/p/pantry_demo.util-1.0.zip"), "pantry-demo-util");
  EXPECT_EQ(project_of_file_location("h/p/Requests-0.2.0.TAR.GZ"), "requests");
  EXPECT_EQ(project_of_file_location("h/p/setuptools-0.6c11-py2.7.egg"), "setuptools");
  // PEP 658 metadata files and query strings name the file they belong to.
  EXPECT_EQ(project_of_file_location("h/p/demo-1.0-py3-none-any.whl.metadata"), "demo");
  EXPECT_EQ(project_of_file_location("h/p/demo-1.0.tar.gz?sig=1-2.zip"), "demo");
}

TEST(PypiNamesTest, FileNamesThatNameNoProjectGiveNone) {
  for (std::string_view location :
       {"h", "h/", "h/p/", "h/p/README.txt", "h/p/demo.tar.gz", "h/p/demo-.tar.gz",
        "h/p/-1.0.tar.gz", "h/p/demo-1.0-any.whl", "h/p/a-b-c-d-e-f-g.whl", "h/p/.metadata",
        "h/p/demo-1.0.tar.gz.metadata.metadata", "h/p/de%20mo-1.0.tar.gz", "h/p/_demo-1.0.zip",
        "h/p/d%C3%A9mo-1.0-py3-none-any.whl", "h/p/demo%2F1-1.0.tar.gz", "h/p/demo-1.0.whl"}) {
    EXPECT_EQ(project_of_file_location(location), std::nullopt) << location;
  }
}

}  // namespace
}  // namespace pantry::registry::pypi
