// Asio, Asio's SSL and Beast compiled once for the whole program (docs/ARCHITECTURE.md, "Build"):
// with BOOST_ASIO_SEPARATE_COMPILATION and BOOST_BEAST_SEPARATE_COMPILATION every other file only
// declares what these headers define.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
