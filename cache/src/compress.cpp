#include "pantry/cache/compress.h"

#include <zstd.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace pantry::cache {
namespace {

struct dctx_deleter {
  void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};

error corrupt(std::string why) {
  return error(errc::corrupt, "zstd frame: " + std::move(why));
}

// Frames written without a content size (streaming compressors) are decompressed in pieces so
// that `max_size` still bounds the memory they can claim.
result<std::vector<std::byte>> decompress_unknown_size(std::span<const std::byte> frame,
                                                       std::size_t max_size) {
  std::unique_ptr<ZSTD_DCtx, dctx_deleter> dctx(ZSTD_createDCtx());
  if (!dctx) throw std::bad_alloc();
  std::vector<std::byte> out;
  ZSTD_inBuffer in{frame.data(), frame.size(), 0};
  std::size_t step = ZSTD_DStreamOutSize();
  for (;;) {
    std::size_t used = out.size();
    out.resize(used + step);
    ZSTD_outBuffer o{out.data(), out.size(), used};
    std::size_t rc = ZSTD_decompressStream(dctx.get(), &o, &in);
    out.resize(o.pos);
    if (ZSTD_isError(rc)) return corrupt(ZSTD_getErrorName(rc));
    if (out.size() > max_size) {
      return corrupt("decompresses to more than the limit of " + std::to_string(max_size) +
                     " bytes");
    }
    if (rc == 0) break;
    if (in.pos == in.size && o.pos < o.size) return corrupt("truncated");
  }
  return out;
}

}  // namespace

std::vector<std::byte> zstd_compress(std::span<const std::byte> bytes, int level) {
  std::vector<std::byte> out(ZSTD_compressBound(bytes.size()));
  std::size_t n = ZSTD_compress(out.data(), out.size(), bytes.data(), bytes.size(), level);
  // Compression into a buffer of ZSTD_compressBound bytes fails only on a bad level or no memory.
  if (ZSTD_isError(n)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

result<std::vector<std::byte>> zstd_decompress(std::span<const std::byte> frame,
                                               std::size_t max_size) {
  std::size_t frame_size = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_size)) {
    return corrupt(std::string("not a valid frame (") + ZSTD_getErrorName(frame_size) + ", " +
                   std::to_string(frame.size()) + " bytes)");
  }
  if (frame_size != frame.size()) {
    return corrupt(std::to_string(frame.size() - frame_size) + " trailing bytes after a frame of " +
                   std::to_string(frame_size) + " bytes");
  }
  unsigned long long content = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (content == ZSTD_CONTENTSIZE_ERROR) return corrupt("not a valid frame header");
  if (content == ZSTD_CONTENTSIZE_UNKNOWN) return decompress_unknown_size(frame, max_size);
  if (content > max_size) {
    return corrupt("would decompress to " + std::to_string(content) +
                   " bytes, more than the limit of " + std::to_string(max_size));
  }
  std::vector<std::byte> out(static_cast<std::size_t>(content));
  std::size_t n = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) return corrupt(ZSTD_getErrorName(n));
  if (n != out.size()) {
    return corrupt("decompressed to " + std::to_string(n) + " bytes, header says " +
                   std::to_string(content));
  }
  return out;
}

}  // namespace pantry::cache
