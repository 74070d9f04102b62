#include "pantry/registry/pypi/wheel.h"

#include "pantry/registry/pypi/names.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

namespace pantry::registry::pypi {
namespace {

constexpr std::string_view kSuffix = ".dist-info/METADATA";
// Block sizes for reads from a byte_source: small after a seek (libarchive hops from one local
// header to the next and reads a few dozen bytes of each), doubling while reads are sequential.
constexpr std::size_t kMinBlock = 16 * 1024;
constexpr std::size_t kMaxBlock = 1024 * 1024;

// Where libarchive's callbacks read from: memory (handed out in place) or a byte_source.
struct input {
  std::span<const std::byte> memory;
  const byte_source* source = nullptr;
  std::uint64_t size = 0;
  std::uint64_t pos = 0;
  std::size_t block = kMinBlock;
  std::vector<std::byte> buffer;
  std::optional<pantry::error> read_error;  // the source's own error, passed on as it is
};

la_ssize_t read_callback(struct archive* a, void* data, const void** out) {
  auto* in = static_cast<input*>(data);
  if (in->pos >= in->size) return 0;
  const std::uint64_t left = in->size - in->pos;
  if (in->source == nullptr) {
    *out = in->memory.data() + in->pos;
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, kMaxBlock));
    in->pos += n;
    return static_cast<la_ssize_t>(n);
  }
  const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left, in->block));
  in->block = std::min(in->block * 2, kMaxBlock);
  in->buffer.resize(std::max(in->buffer.size(), want));
  auto got = in->source->read_at(in->pos, std::span(in->buffer.data(), want));
  if (!got) {
    in->read_error = got.error();
    archive_set_error(a, EIO, "read failed");
    return ARCHIVE_FATAL;
  }
  if (*got == 0 || *got > want) {
    in->read_error =
        pantry::error(errc::io_error, "pypi: wheel source returned " + std::to_string(*got) +
                                          " bytes at offset " + std::to_string(in->pos) + " of " +
                                          std::to_string(in->size));
    archive_set_error(a, EIO, "short read");
    return ARCHIVE_FATAL;
  }
  in->pos += *got;
  *out = in->buffer.data();
  return static_cast<la_ssize_t>(*got);
}

la_int64_t skip_callback(struct archive*, void* data, la_int64_t request) {
  auto* in = static_cast<input*>(data);
  if (request <= 0) return 0;
  const std::uint64_t n =
      std::min<std::uint64_t>(static_cast<std::uint64_t>(request), in->size - in->pos);
  in->pos += n;
  in->block = kMinBlock;
  return static_cast<la_int64_t>(n);
}

la_int64_t seek_callback(struct archive*, void* data, la_int64_t offset, int whence) {
  auto* in = static_cast<input*>(data);
  la_int64_t base = 0;
  switch (whence) {
    case SEEK_SET:
      base = 0;
      break;
    case SEEK_CUR:
      base = static_cast<la_int64_t>(in->pos);
      break;
    case SEEK_END:
      base = static_cast<la_int64_t>(in->size);
      break;
    default:
      return ARCHIVE_FATAL;
  }
  if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0) return ARCHIVE_FATAL;
  in->pos = static_cast<std::uint64_t>(base + offset);
  in->block = kMinBlock;
  return static_cast<la_int64_t>(in->pos);
}

struct archive_deleter {
  void operator()(struct archive* a) const noexcept { archive_read_free(a); }
};
using archive_ptr = std::unique_ptr<struct archive, archive_deleter>;

std::string entry_name(struct archive_entry* e) {
  if (const char* utf8 = archive_entry_pathname_utf8(e)) return utf8;
  if (const char* name = archive_entry_pathname(e)) return name;
  return {};
}

// "foo-1.0" of "foo-1.0.dist-info/METADATA" when `name` is a top-level dist-info METADATA.
std::optional<std::string_view> dist_info_stem(std::string_view name) {
  if (name.size() <= kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix) {
    return std::nullopt;
  }
  const std::string_view stem = name.substr(0, name.size() - kSuffix.size());
  if (stem.find('/') != std::string_view::npos) return std::nullopt;
  return stem;
}

class metadata_reader {
 public:
  metadata_reader(std::span<const std::byte> memory, const byte_source* source,
                  std::string_view filename)
      : filename_(filename) {
    in_.memory = memory;
    in_.source = source;
    in_.size = source != nullptr ? source->size : memory.size();
  }

  // Finds METADATA; see extract_wheel_metadata.
  result<std::string> run() {
    std::string expected;
    if (auto d = parse_dist_filename(filename_, ""); d && d->wheel) {
      expected = normalize_project_name(d->project + "-" + d->version);
    }
    std::vector<std::string> others;  // candidates that do not match the file name
    auto found = scan([&](std::string_view stem) {
      if (!expected.empty() && normalize_project_name(stem) == expected) return true;
      others.emplace_back(stem);
      return false;
    });
    if (!found) return found.error();
    if (*found) return std::move(metadata_);
    if (others.empty()) {
      return fail("it holds no top-level *.dist-info/METADATA");
    }
    if (others.size() > 1) {
      std::string list;
      for (const auto& o : others)
        list += (list.empty() ? "" : ", ") + o + ".dist-info";
      return fail("it holds several dist-info directories (" + list +
                  ") and none matches the file name");
    }
    // The only candidate was passed over; read the archive again up to it.
    const std::string only = others.front();
    auto again = scan([&](std::string_view stem) { return stem == only; });
    if (!again) return again.error();
    if (!*again) return fail("its central directory changed between two reads");
    return std::move(metadata_);
  }

 private:
  pantry::error fail(const std::string& why) const {
    return pantry::error(errc::invalid_argument,
                         "pypi: cannot extract METADATA from wheel " + filename_ + ": " + why);
  }

  pantry::error archive_failure(struct archive* a, std::string_view what) {
    if (in_.read_error) return *in_.read_error;
    const char* msg = archive_error_string(a);
    return fail(std::string(what) + ": " + (msg != nullptr ? msg : "unknown libarchive error"));
  }

  // Walks the zip's entries; reads the first top-level dist-info METADATA for which
  // `wanted(stem)` is true into metadata_ and returns true; false if there is none.
  template <class F>
  result<bool> scan(F&& wanted) {
    in_.pos = 0;
    in_.block = kMinBlock;
    archive_ptr a(archive_read_new());
    if (!a) return fail("libarchive: out of memory");
    archive_read_support_format_zip_seekable(a.get());
    archive_read_set_callback_data(a.get(), &in_);
    archive_read_set_read_callback(a.get(), read_callback);
    archive_read_set_skip_callback(a.get(), skip_callback);
    archive_read_set_seek_callback(a.get(), seek_callback);
    if (archive_read_open1(a.get()) != ARCHIVE_OK) return archive_failure(a.get(), "not a zip");
    for (;;) {
      struct archive_entry* entry = nullptr;
      const int r = archive_read_next_header(a.get(), &entry);
      if (r == ARCHIVE_EOF) return false;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return archive_failure(a.get(), "bad zip");
      if (archive_entry_filetype(entry) != AE_IFREG) continue;  // a symlink's "data" is no file
      const std::string name = entry_name(entry);
      const auto stem = dist_info_stem(name);
      if (!stem || !wanted(*stem)) continue;
      auto data = read_data(a.get(), entry, name);
      if (!data) return data.error();
      metadata_ = std::move(*data);
      return true;
    }
  }

  result<std::string> read_data(struct archive* a, struct archive_entry* entry,
                                const std::string& name) {
    if (archive_entry_is_encrypted(entry)) return fail(name + " is encrypted");
    if (archive_entry_size_is_set(entry) &&
        archive_entry_size(entry) > la_int64_t{kMaxMetadataSize}) {
      return fail(name + " claims " + std::to_string(archive_entry_size(entry)) +
                  " bytes, more than the limit of " + std::to_string(kMaxMetadataSize));
    }
    std::string out;
    char buf[16384];
    for (;;) {
      const la_ssize_t n = archive_read_data(a, buf, sizeof buf);
      if (n == 0) break;
      if (n < 0) return archive_failure(a, "reading " + name);
      if (out.size() + static_cast<std::size_t>(n) > kMaxMetadataSize) {
        return fail(name + " is larger than the limit of " + std::to_string(kMaxMetadataSize) +
                    " bytes");
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

  std::string filename_;
  input in_;
  std::string metadata_;
};

}  // namespace

result<std::string> extract_wheel_metadata(const byte_source& source, std::string_view filename) {
  if (!source.read_at) {
    return pantry::error(errc::invalid_argument,
                         "pypi: wheel " + std::string(filename) + ": byte source has no reader");
  }
  return metadata_reader({}, &source, filename).run();
}

result<std::string> extract_wheel_metadata(std::span<const std::byte> wheel,
                                           std::string_view filename) {
  return metadata_reader(wheel, nullptr, filename).run();
}

}  // namespace pantry::registry::pypi
