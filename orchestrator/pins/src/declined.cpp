#include "declined.h"

#include "pantry/text_file.h"

#include <fstream>
#include <sstream>
#include <system_error>

namespace pantry::orchestrator::pins {

namespace fs = std::filesystem;

result<declined_record> declined_record::load(fs::path file) {
  declined_record d;
  d.file_ = std::move(file);
  std::error_code ec;
  if (!fs::exists(d.file_, ec)) return d;
  auto text = read_text_file(d.file_);
  if (!text) return text.error();
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    const std::size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    const std::size_t end = line.find('\t', tab + 1);
    d.entries_[{line.substr(0, tab), line.substr(tab + 1, end - tab - 1)}] =
        end == std::string::npos ? std::string() : line.substr(end + 1);
  }
  return d;
}

result<void> declined_record::add(const std::string& repo, const std::string& branch,
                                  const std::string& url) {
  std::error_code ec;
  fs::create_directories(file_.parent_path(), ec);
  if (ec) {
    return error(errc::io_error, file_.parent_path().string() + ": cannot create: " + ec.message());
  }
  std::ofstream out(file_, std::ios::binary | std::ios::app);
  out << repo << '\t' << branch << '\t' << url << '\n';
  out.close();
  if (!out) return error(errc::io_error, file_.string() + ": write failed");
  entries_[{repo, branch}] = url;
  return {};
}

}  // namespace pantry::orchestrator::pins
