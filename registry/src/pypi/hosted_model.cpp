#include "pantry/registry/pypi/hosted.h"

#include "pantry/registry/pypi/metadata.h"
#include "pantry/registry/pypi/names.h"
#include "pantry/text.h"

#include "text.h"

#include <boost/algorithm/hex.hpp>
#include <boost/json.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <stdexcept>

namespace pantry::registry::pypi {

namespace json = boost::json;

namespace {

std::string hex_of(const unsigned char* p, std::size_t n) {
  std::string out;
  out.reserve(n * 2);
  boost::algorithm::hex_lower(p, p + n, std::back_inserter(out));
  return out;
}

// ---- BLAKE2b, RFC 7693 ----

constexpr std::array<std::uint64_t, 8> kBlakeIv = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

// The message word schedule of each round (rounds 10 and 11 repeat 0 and 1).
constexpr std::uint8_t kSigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

constexpr std::uint64_t rotr(std::uint64_t x, int n) {
  return (x >> n) | (x << (64 - n));
}

class blake2b {
 public:
  explicit blake2b(std::size_t out_len) : out_len_(out_len) {
    h_ = kBlakeIv;
    h_[0] ^= 0x01010000ULL ^ static_cast<std::uint64_t>(out_len);
  }

  void update(const unsigned char* p, std::size_t n) {
    while (n > 0) {
      // A full block is compressed only once more bytes follow: the last one is compressed
      // with the final flag.
      if (used_ == kBlock) {
        counter_ += kBlock;
        compress(false);
        used_ = 0;
      }
      const std::size_t take = std::min(n, kBlock - used_);
      std::memcpy(block_.data() + used_, p, take);
      used_ += take;
      p += take;
      n -= take;
    }
  }

  std::string finish() {
    counter_ += used_;
    std::fill(block_.begin() + static_cast<std::ptrdiff_t>(used_), block_.end(), 0);
    compress(true);
    std::array<unsigned char, 64> out{};
    for (std::size_t i = 0; i < 64; ++i)
      out[i] = static_cast<unsigned char>(h_[i / 8] >> (8 * (i % 8)));
    return hex_of(out.data(), out_len_);
  }

 private:
  static constexpr std::size_t kBlock = 128;

  void compress(bool last) {
    std::array<std::uint64_t, 16> m{};
    for (std::size_t i = 0; i < 16; ++i) {
      std::uint64_t w = 0;
      for (std::size_t b = 0; b < 8; ++b)
        w |= static_cast<std::uint64_t>(block_[i * 8 + b]) << (8 * b);
      m[i] = w;
    }
    std::array<std::uint64_t, 16> v{};
    for (std::size_t i = 0; i < 8; ++i) {
      v[i] = h_[i];
      v[i + 8] = kBlakeIv[i];
    }
    // The byte counter is 128 bits; its high word stays 0 below 2^64 bytes.
    v[12] ^= counter_;
    if (last) v[14] = ~v[14];
    auto g = [&v](int a, int b, int c, int d, std::uint64_t x, std::uint64_t y) {
      v[a] = v[a] + v[b] + x;
      v[d] = rotr(v[d] ^ v[a], 32);
      v[c] = v[c] + v[d];
      v[b] = rotr(v[b] ^ v[c], 24);
      v[a] = v[a] + v[b] + y;
      v[d] = rotr(v[d] ^ v[a], 16);
      v[c] = v[c] + v[d];
      v[b] = rotr(v[b] ^ v[c], 63);
    };
    for (int round = 0; round < 12; ++round) {
      const std::uint8_t* s = kSigma[round % 10];
      g(0, 4, 8, 12, m[s[0]], m[s[1]]);
      g(1, 5, 9, 13, m[s[2]], m[s[3]]);
      g(2, 6, 10, 14, m[s[4]], m[s[5]]);
      g(3, 7, 11, 15, m[s[6]], m[s[7]]);
      g(0, 5, 10, 15, m[s[8]], m[s[9]]);
      g(1, 6, 11, 12, m[s[10]], m[s[11]]);
      g(2, 7, 8, 13, m[s[12]], m[s[13]]);
      g(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (std::size_t i = 0; i < 8; ++i)
      h_[i] ^= v[i] ^ v[i + 8];
  }

  std::array<std::uint64_t, 8> h_{};
  std::array<unsigned char, kBlock> block_{};
  std::size_t used_ = 0;
  std::uint64_t counter_ = 0;
  std::size_t out_len_;
};

bool is_filename_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == '+' || c == '!';
}

std::string lower_ends(std::string_view s, std::size_t n) {
  return ascii_lower(s.substr(s.size() >= n ? s.size() - n : 0));
}

}  // namespace

// ---- upload_hasher ----

struct upload_hasher::state {
  EVP_MD_CTX* sha256 = nullptr;
  EVP_MD_CTX* md5 = nullptr;
  blake2b blake{32};
  ~state() {
    EVP_MD_CTX_free(sha256);
    EVP_MD_CTX_free(md5);
  }
};

upload_hasher::upload_hasher() : state_(std::make_unique<state>()) {
  state_->sha256 = EVP_MD_CTX_new();
  state_->md5 = EVP_MD_CTX_new();
  if (state_->sha256 == nullptr || state_->md5 == nullptr ||
      EVP_DigestInit_ex(state_->sha256, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestInit_ex(state_->md5, EVP_md5(), nullptr) != 1) {
    throw std::runtime_error("OpenSSL: cannot initialise sha256 and md5");  // broken invariant
  }
}

upload_hasher::~upload_hasher() = default;
upload_hasher::upload_hasher(upload_hasher&&) noexcept = default;
upload_hasher& upload_hasher::operator=(upload_hasher&&) noexcept = default;

void upload_hasher::update(std::span<const std::byte> bytes) {
  EVP_DigestUpdate(state_->sha256, bytes.data(), bytes.size());
  EVP_DigestUpdate(state_->md5, bytes.data(), bytes.size());
  state_->blake.update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

upload_digests upload_hasher::finish() {
  upload_digests d;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(state_->sha256, out, &len);
  d.sha256 = hex_of(out, len);
  EVP_DigestFinal_ex(state_->md5, out, &len);
  d.md5 = hex_of(out, len);
  d.blake2_256 = state_->blake.finish();
  return d;
}

std::string blake2b_hex(std::span<const std::byte> bytes, std::size_t out_len) {
  blake2b b(std::clamp<std::size_t>(out_len, 1, 64));
  b.update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return b.finish();
}

// ---- the upload's file name ----

result<upload_file> check_upload_filename(std::string_view filename, std::string_view name,
                                          std::string_view version, std::string_view filetype) {
  const std::string shown = quote_for_message(filename);
  if (filename.empty() || filename.size() > 255 || filename.front() == '.' ||
      !std::all_of(filename.begin(), filename.end(), is_filename_char)) {
    return error(errc::invalid_argument,
                 "Invalid distribution file name " + shown +
                     ": use letters, digits, '.', '_', '-', '+' and '!' (at most 255, no path)");
  }
  if (!is_valid_project_name(name)) {
    return error(errc::invalid_argument,
                 "Invalid project name " + quote_for_message(name) +
                     ": a name is letters and digits with '.', '_' or '-' inside (PEP 508)");
  }
  if (version.empty()) {
    return error(errc::invalid_argument, "The form has no version: send the version field");
  }
  upload_file out;
  out.project = normalize_project_name(name);
  out.version = std::string(version);
  if (lower_ends(filename, 4) == ".whl") {
    out.wheel = true;
  } else if (lower_ends(filename, 7) != ".tar.gz" && lower_ends(filename, 4) != ".zip") {
    return error(errc::invalid_argument,
                 "Invalid file extension of " + shown +
                     ": upload a wheel (.whl) or an sdist (.tar.gz or .zip)");
  }
  const std::string_view want_type = out.wheel ? "bdist_wheel" : "sdist";
  if (filetype != want_type) {
    return error(errc::invalid_argument, "The filetype " + quote_for_message(filetype) +
                                             " does not fit " + shown + ", which is " +
                                             (out.wheel ? "a wheel (bdist_wheel)" : "an sdist"));
  }
  auto parsed = parse_dist_filename(filename, name);
  if (!parsed) {
    return error(errc::invalid_argument,
                 "Start filename for project " + quote_for_message(out.project) +
                     " with its name: " + shown + " is not " +
                     (out.wheel ? "{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl"
                                : "{name}-{version}.tar.gz") +
                     " for that project");
  }
  if (!ascii_iequals(parsed->version, version)) {
    return error(errc::invalid_argument, "Version in filename should be " +
                                             quote_for_message(version) + " (the form's), not " +
                                             quote_for_message(parsed->version) + ": " + shown);
  }
  return out;
}

std::vector<std::string> metadata_fields(std::string_view metadata, std::string_view field) {
  std::vector<std::string> found;
  bool in_field = false;
  // Continuation lines are appended as they come; a field is trimmed (or dropped when empty) once
  // the next header starts.
  const auto finish = [&] {
    if (!in_field) return;
    in_field = false;
    const std::string_view value = trim_ascii_space(found.back());
    if (value.empty()) {
      found.pop_back();
    } else {
      found.back() = std::string(value);
    }
  };
  while (!metadata.empty()) {
    const std::size_t eol = metadata.find('\n');
    std::string_view line = metadata.substr(0, eol);
    metadata = eol == std::string_view::npos ? std::string_view() : metadata.substr(eol + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty()) break;  // the headers end; the description follows
    if (line.front() == ' ' || line.front() == '\t') {
      if (in_field) found.back() += " " + std::string(trim_ascii_space(line));
      continue;
    }
    finish();
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    in_field = ascii_iequals(trim_ascii_space(line.substr(0, colon)), field);
    if (in_field) found.emplace_back(trim_ascii_space(line.substr(colon + 1)));
  }
  finish();
  return found;
}

std::optional<std::string> metadata_field(std::string_view metadata, std::string_view field) {
  auto all = metadata_fields(metadata, field);
  if (all.empty()) return std::nullopt;
  return std::move(all.front());
}

// ---- the project record ----

const hosted_file* hosted_project::find(std::string_view filename) const {
  for (const auto& f : files) {
    if (f.filename == filename) return &f;
  }
  return nullptr;
}

std::string serialize_hosted_project(const hosted_project& p) {
  // Boost.JSON writes a string's bytes as they are: invalid UTF-8 would make a record no parser
  // reads back, and the project unreadable.
  const auto text = [](std::string_view s) { return json::string(detail::valid_utf8(s)); };
  json::object o;
  o["name"] = text(p.name);
  json::array files;
  for (const auto& f : p.files) {
    json::object j;
    j["filename"] = text(f.filename);
    j["version"] = text(f.version);
    j["sha256"] = text(f.sha256);
    j["size"] = f.size;
    j["upload_time"] = text(f.upload_time);
    if (f.requires_python) j["requires_python"] = text(*f.requires_python);
    if (f.metadata_sha256) j["metadata_sha256"] = text(*f.metadata_sha256);
    if (f.yanked) j["yanked"] = text(*f.yanked);
    files.push_back(std::move(j));
  }
  o["files"] = std::move(files);
  return json::serialize(o);
}

result<hosted_project> parse_hosted_project(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  auto bad = [](std::string what) {
    return error(errc::corrupt, "a hosted project record is not readable: " + what);
  };
  if (ec || !v.is_object()) return bad("not a JSON object");
  const auto& o = v.as_object();
  hosted_project p;
  const auto* name = o.if_contains("name");
  const auto* files = o.if_contains("files");
  if (name == nullptr || !name->is_string()) return bad("no string \"name\"");
  if (files == nullptr || !files->is_array()) return bad("no list \"files\"");
  p.name = std::string(name->as_string());
  for (const auto& item : files->as_array()) {
    if (!item.is_object()) return bad("a file is not an object");
    const auto& j = item.as_object();
    hosted_file f;
    auto text_of = [&j](std::string_view key) -> std::optional<std::string> {
      const auto* x = j.if_contains(key);
      if (x == nullptr || !x->is_string()) return std::nullopt;
      return std::string(x->as_string());
    };
    auto filename = text_of("filename");
    auto version = text_of("version");
    auto sha256 = text_of("sha256");
    auto upload_time = text_of("upload_time");
    const auto* size = j.if_contains("size");
    if (!filename || !version || !sha256 || !upload_time || size == nullptr ||
        !(size->is_uint64() || size->is_int64())) {
      return bad("a file lacks filename, version, sha256, size or upload_time");
    }
    f.filename = std::move(*filename);
    f.version = std::move(*version);
    f.sha256 = std::move(*sha256);
    f.upload_time = std::move(*upload_time);
    f.size = size->is_uint64() ? size->as_uint64() : static_cast<std::uint64_t>(size->as_int64());
    f.requires_python = text_of("requires_python");
    f.metadata_sha256 = text_of("metadata_sha256");
    f.yanked = text_of("yanked");
    p.files.push_back(std::move(f));
  }
  return p;
}

project_page hosted_page(const hosted_project& p, std::string_view files_prefix) {
  project_page page;
  page.name = p.name;
  page.api_version = "1.1";
  for (const auto& f : p.files) {
    file_entry e;
    e.filename = f.filename;
    e.url = std::string(files_prefix) + f.filename;
    e.hashes["sha256"] = f.sha256;
    e.requires_python = f.requires_python;
    e.yanked = f.yanked;
    if (f.metadata_sha256) {
      e.core_metadata = std::map<std::string, std::string>{{"sha256", *f.metadata_sha256}};
    }
    e.size = f.size;
    e.upload_time = f.upload_time;
    page.files.push_back(std::move(e));
    if (std::find(page.versions.begin(), page.versions.end(), f.version) == page.versions.end()) {
      page.versions.push_back(f.version);
    }
  }
  return page;
}

std::size_t set_yanked(hosted_project& p, std::string_view version,
                       const std::optional<std::string>& reason) {
  std::size_t n = 0;
  for (auto& f : p.files) {
    if (!ascii_iequals(f.version, version)) continue;
    f.yanked = reason;
    ++n;
  }
  return n;
}

}  // namespace pantry::registry::pypi
