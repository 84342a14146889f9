// Model layer: the `.eb` file (docs/format.md) read without Python.
//
// A ModelFile holds the file's bytes (memory-mapped, copied, or borrowed from
// the caller for the duration of a load) and the metadata parsed into a value
// tree.  Arrays in the tree point into the data section: nothing is copied
// until a step packs its constants.  Every offset, size, count, dimension,
// nesting level and dtype is checked against the bytes present before use,
// array ranges may not overlap, and both sections carry a CRC-32; any problem
// throws ModelError naming what is wrong and where.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace eb {

// A file that is not a valid model (truncated, corrupted, hostile, another version).
class ModelError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class ArrayDtype : uint8_t { kUint8 = 1, kInt8 = 2, kInt32 = 3, kFloat32 = 4 };

// An array of the data section: a view, valid while its ModelFile lives.
struct ArrayView {
  ArrayDtype dtype = ArrayDtype::kUint8;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  int64_t count = 0;  // product of shape
  int64_t nbytes = 0;

  int64_t item_size() const { return dtype == ArrayDtype::kInt32 || dtype == ArrayDtype::kFloat32 ? 4 : 1; }
};

// One typed value of the metadata tree.
struct Value {
  enum class Kind : uint8_t { kNone, kBool, kInt, kFloat, kString, kList, kDict, kArray };
  Kind kind = Kind::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::vector<Value> items;                           // list
  std::vector<std::pair<std::string, Value>> fields;  // dict, in file order
  std::shared_ptr<const ArrayView> array;             // array

  // The dict entry `key`, or nullptr (also for a value that is not a dict).
  const Value* find(std::string_view key) const;
};

// Limits of the reader (each documented in docs/format.md).
struct ReadLimits {
  int64_t max_values = int64_t{1} << 20;        // metadata values in all
  int64_t max_metadata_bytes = int64_t{64} << 20;
};

class ModelFile {
 public:
  // Memory-maps `path` read-only.
  static std::shared_ptr<ModelFile> map(const std::string& path, const ReadLimits& limits = {});
  // Copies `size` bytes.
  static std::shared_ptr<ModelFile> copy(const void* data, size_t size, const ReadLimits& limits = {});
  // Reads `size` bytes in place: they must outlive the ModelFile.
  static std::shared_ptr<ModelFile> borrow(const void* data, size_t size, const ReadLimits& limits = {});

  struct Private {};  // constructed through map / copy / borrow only
  explicit ModelFile(Private) {}
  ~ModelFile();
  ModelFile(const ModelFile&) = delete;
  ModelFile& operator=(const ModelFile&) = delete;

  const Value& root() const { return root_; }
  int major_version() const { return major_; }
  int minor_version() const { return minor_; }
  size_t size() const { return size_; }

 private:
  void parse(const ReadLimits& limits);

  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0;
  std::vector<uint8_t> owned_;  // copy()
  void* mapping_ = nullptr;     // map(): munmap'd on destruction
  size_t mapping_size_ = 0;
  int major_ = 0, minor_ = 0;
  Value root_;
};

// CRC-32 (zlib's polynomial) of `n` bytes.
uint32_t crc32(const uint8_t* p, size_t n);

}  // namespace eb
