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

}  // namespace
}  // namespace pantry::registry::pypi
