// Model layer: the `.eb` reader (docs/format.md).  See model_file.h.
#include "model/model_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace eb {
namespace {

constexpr char kMagic[8] = {'E', 'I', 'G', 'H', 'T', 'B', 'I', 'T'};
constexpr int kMajorVersion = 2;
constexpr size_t kHeaderSize = 64;
constexpr uint64_t kAlign = 64;
constexpr int kMaxDepth = 16;
constexpr int kMaxDims = 8;

enum Tag : uint8_t { kNone, kBool, kInt, kFloat, kStr, kList, kDict, kArray };

[[noreturn]] void bad(const std::string& what) { throw ModelError(what); }

// Little-endian reads (the format's byte order, whatever the host's).
template <typename T>
T load_le(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
  return v;
}

// Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Parses the metadata section into a Value tree; arrays are checked against the data section.
class TreeReader {
 public:
  TreeReader(const uint8_t* meta, uint64_t meta_size, const uint8_t* data, uint64_t data_size, int64_t max_values)
      : meta_(meta), meta_size_(meta_size), data_(data), data_size_(data_size), max_values_(max_values) {}

  Value read_root() {
    Value v = value(0);
    if (pos_ != meta_size_) bad(std::to_string(meta_size_ - pos_) + " unread bytes after the metadata");
    check_no_overlap();
    return v;
  }

 private:
  const uint8_t* take(uint64_t n, const char* what) {
    if (n > meta_size_ - pos_)
      bad(std::string("metadata truncated: ") + what + " needs " + std::to_string(n) + " bytes at offset " +
          std::to_string(pos_) + ", " + std::to_string(meta_size_ - pos_) + " left");
    const uint8_t* p = meta_ + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T read(const char* what) {
    return load_le<T>(take(sizeof(T), what));
  }

  Value value(int depth) {
    if (depth > kMaxDepth) bad("metadata nested deeper than " + std::to_string(kMaxDepth) + " levels");
    if (++values_ > max_values_) bad("metadata holds more than " + std::to_string(max_values_) + " values");
    Value v;
    const uint64_t at = pos_;
    switch (read<uint8_t>("a value tag")) {
      case kNone:
        return v;
      case kBool: {
        const uint8_t b = read<uint8_t>("a bool");
        if (b > 1) bad("bool at offset " + std::to_string(at) + " is neither 0 nor 1");
        v.kind = Value::Kind::kBool;
        v.b = b != 0;
        return v;
      }
      case kInt:
        v.kind = Value::Kind::kInt;
        v.i = static_cast<int64_t>(read<uint64_t>("an int"));
        return v;
      case kFloat: {
        const uint64_t bits = read<uint64_t>("a float");
        v.kind = Value::Kind::kFloat;
        std::memcpy(&v.f, &bits, sizeof bits);
        return v;
      }
      case kStr: {
        const uint32_t n = read<uint32_t>("a string length");
        const uint8_t* p = take(n, "a string");
        if (!is_utf8(p, n)) bad("metadata string at offset " + std::to_string(at) + " is not UTF-8");
        v.kind = Value::Kind::kString;
        v.s.assign(reinterpret_cast<const char*>(p), n);
        return v;
      }
      case kList:
      case kDict: {
        const bool dict = meta_[at] == kDict;
        const uint32_t n = read<uint32_t>("a count");
        if (n > meta_size_ - pos_) bad("metadata count " + std::to_string(n) + " at offset " + std::to_string(at) +
                                       " exceeds the bytes left");  // every item takes at least one byte
        if (dict) {
          v.kind = Value::Kind::kDict;
          v.fields.reserve(n);
          for (uint32_t k = 0; k < n; ++k) {
            Value key = value(depth + 1);
            if (key.kind != Value::Kind::kString) bad("metadata dict key before offset " + std::to_string(pos_) + " is not a string");
            v.fields.emplace_back(std::move(key.s), value(depth + 1));
          }
        } else {
          v.kind = Value::Kind::kList;
          v.items.reserve(n);
          for (uint32_t k = 0; k < n; ++k) v.items.push_back(value(depth + 1));
        }
        return v;
      }
      case kArray:
        v.kind = Value::Kind::kArray;
        v.array = array(at);
        return v;
      default:
        bad("unknown metadata tag " + std::to_string(meta_[at]) + " at offset " + std::to_string(at));
    }
  }

  std::shared_ptr<const ArrayView> array(uint64_t at) {
    auto a = std::make_shared<ArrayView>();
    const uint8_t code = read<uint8_t>("an array dtype");
    const uint8_t ndim = read<uint8_t>("an array rank");
    if (code < 1 || code > 4) bad("unknown array dtype code " + std::to_string(code) + " at offset " + std::to_string(at));
    if (ndim > kMaxDims) bad("array with " + std::to_string(ndim) + " dimensions (at most " + std::to_string(kMaxDims) + ")");
    a->dtype = static_cast<ArrayDtype>(code);
    // The element count is bounded by the data section (checked as it grows: no overflow).
    const uint64_t limit = data_size_ / static_cast<uint64_t>(a->item_size());
    uint64_t count = 1;
    bool too_big = false;
    for (uint8_t d = 0; d < ndim; ++d) {
      const int64_t dim = static_cast<int64_t>(read<uint64_t>("array dimensions"));
      if (dim < 0) bad("array at offset " + std::to_string(at) + " has a negative dimension");
      a->shape.push_back(dim);
      if (dim == 0) count = 0;
      if (count != 0 && static_cast<uint64_t>(dim) > limit / count) too_big = true;
      else count *= static_cast<uint64_t>(dim);
    }
    const uint64_t offset = read<uint64_t>("an array offset");
    const uint64_t nbytes = read<uint64_t>("an array size");
    if (too_big && count != 0) bad("array at offset " + std::to_string(at) + " is larger than the data section");
    if (nbytes != count * static_cast<uint64_t>(a->item_size()))
      bad("array at offset " + std::to_string(at) + " declares " + std::to_string(nbytes) + " bytes for its shape");
    if (offset % kAlign != 0 || offset > data_size_ || nbytes > data_size_ - offset)
      bad("array bytes at data offset " + std::to_string(offset) + " (+" + std::to_string(nbytes) +
          ") are unaligned or outside the data section (" + std::to_string(data_size_) + " bytes)");
    a->count = static_cast<int64_t>(count);
    a->nbytes = static_cast<int64_t>(nbytes);
    a->data = data_ + offset;
    if (nbytes > 0) ranges_.emplace_back(offset, offset + nbytes);
    return a;
  }

  // Entries may not share bytes: aliasing would let a small file stand for many large arrays.
  void check_no_overlap() {
    std::sort(ranges_.begin(), ranges_.end());
    for (size_t k = 1; k < ranges_.size(); ++k)
      if (ranges_[k].first < ranges_[k - 1].second)
        bad("arrays at data offsets " + std::to_string(ranges_[k - 1].first) + " and " +
            std::to_string(ranges_[k].first) + " overlap");
  }

  const uint8_t* meta_;
  uint64_t meta_size_;
  const uint8_t* data_;
  uint64_t data_size_;
  int64_t max_values_;
  uint64_t pos_ = 0;
  int64_t values_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges_;
};

}  // namespace

// Slicing-by-8: eight bytes per step through eight tables (table[k] advances a byte k positions),
// about 1 GB/s where the bytewise loop gives 300 MB/s: the data section of a large model is
// checked at every load.
uint32_t crc32(const uint8_t* p, size_t n) {
  using Table = std::array<uint32_t, 256>;
  static const std::array<Table, 8> t = [] {
    std::array<Table, 8> tables{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      tables[0][i] = c;
    }
    for (size_t k = 1; k < 8; ++k)
      for (size_t i = 0; i < 256; ++i) tables[k][i] = (tables[k - 1][i] >> 8) ^ tables[0][tables[k - 1][i] & 0xFF];
    return tables;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (; n >= 8; p += 8, n -= 8) {
    const uint32_t lo = c ^ load_le<uint32_t>(p), hi = load_le<uint32_t>(p + 4);
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^ t[3][hi & 0xFF] ^
        t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
  }
  for (; n > 0; ++p, --n) c = t[0][(c ^ *p) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

const Value* Value::find(std::string_view key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

std::shared_ptr<ModelFile> ModelFile::map(const std::string& path, const ReadLimits& limits) {
  auto f = std::make_shared<ModelFile>(Private{});
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot open model file '" + path + "'");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    bad("'" + path + "' is not a regular file");
  }
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw std::system_error(err, std::generic_category(), "cannot map model file '" + path + "'");
    }
    f->mapping_ = p;
    f->mapping_size_ = f->size_;
    f->bytes_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid
  f->parse(limits);
  return f;
}

std::shared_ptr<ModelFile> ModelFile::copy(const void* data, size_t size, const ReadLimits& limits) {
  auto f = std::make_shared<ModelFile>(Private{});
  const auto* p = static_cast<const uint8_t*>(data);
  f->owned_.assign(p, p + size);
  f->bytes_ = f->owned_.data();
  f->size_ = size;
  f->parse(limits);
  return f;
}

std::shared_ptr<ModelFile> ModelFile::borrow(const void* data, size_t size, const ReadLimits& limits) {
  auto f = std::make_shared<ModelFile>(Private{});
  f->bytes_ = static_cast<const uint8_t*>(data);
  f->size_ = size;
  f->parse(limits);
  return f;
}

ModelFile::~ModelFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

void ModelFile::parse(const ReadLimits& limits) {
  if (bytes_ == nullptr && size_ > 0) bad("no model bytes");
  if (size_ < kHeaderSize)
    bad("not a model file: " + std::to_string(size_) + " bytes, shorter than the " + std::to_string(kHeaderSize) +
        "-byte header");
  const uint8_t* h = bytes_;
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0) bad("not an eightbit model file (bad magic)");
  major_ = load_le<uint16_t>(h + 8);
  minor_ = load_le<uint16_t>(h + 10);
  if (major_ != kMajorVersion)
    bad("model file version " + std::to_string(major_) + "." + std::to_string(minor_) + "; this eightbit reads version " +
        std::to_string(kMajorVersion) + ".x (re-save the model with this version)");
  const uint32_t header_size = load_le<uint32_t>(h + 12);
  const uint64_t file_size = load_le<uint64_t>(h + 16), meta_off = load_le<uint64_t>(h + 24),
                 meta_size = load_le<uint64_t>(h + 32), data_off = load_le<uint64_t>(h + 40),
                 data_size = load_le<uint64_t>(h + 48);
  const uint32_t meta_crc = load_le<uint32_t>(h + 56), data_crc = load_le<uint32_t>(h + 60);
  if (header_size != kHeaderSize || file_size != size_)
    bad("file is " + std::to_string(size_) + " bytes but its header says " + std::to_string(file_size) +
        " (truncated or padded)");
  // Each comparison keeps every sum below the file size: no wrap-around.
  if (meta_off < kHeaderSize || meta_off > size_ || meta_size > size_ - meta_off || data_off < meta_off + meta_size ||
      data_off % kAlign != 0 || data_off > size_ || data_size != size_ - data_off)
    bad("section offsets in the header are inconsistent");
  if (static_cast<int64_t>(meta_size) > limits.max_metadata_bytes)
    bad("metadata of " + std::to_string(meta_size) + " bytes exceeds the limit of " +
        std::to_string(limits.max_metadata_bytes));
  const uint8_t* meta = bytes_ + meta_off;
  const uint8_t* data = bytes_ + data_off;
  if (crc32(meta, meta_size) != meta_crc || crc32(data, data_size) != data_crc)
    bad("checksum mismatch: the file is corrupted");
  root_ = TreeReader(meta, meta_size, data, data_size, limits.max_values).read_root();
}

}  // namespace eb
