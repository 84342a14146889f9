// Model layer: typed access to one dict of the metadata tree (model_file.h),
// each failure a ModelError naming the record and the key.  The builder reads
// the file-level dicts with it, each step's create function its records.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/model_file.h"

namespace eb {

class Record {
 public:
  using Kind = Value::Kind;

  Record(const Value* v, std::string where);  // throws unless v is a dict
  const std::string& where() const { return where_; }

  [[noreturn]] void bad(const std::string& what) const;

  const Value* find(const char* key) const { return v_->find(key); }
  const Value& get(const char* key, Kind kind) const;  // present and of this kind
  bool has(const char* key) const;                     // present and not none
  Record dict(const char* key) const;
  const std::string& str(const char* key) const { return get(key, Kind::kString).s; }
  bool flag(const char* key) const { return get(key, Kind::kBool).b; }
  int64_t integer(const char* key) const { return get(key, Kind::kInt).i; }
  int32_t int32(const char* key, int64_t lo, int64_t hi) const;  // an int in [lo, hi]
  double real(const char* key) const;                            // an int or a float
  std::vector<int64_t> ints(const char* key, size_t n = 0) const;  // n != 0: exactly n of them
  std::array<int64_t, 2> pair(const char* key) const;
  std::array<int64_t, 4> quad(const char* key) const;
  const ArrayView& array(const char* key, ArrayDtype dtype, const char* dtype_name) const;

 private:
  const Value* v_;
  std::string where_;
};

}  // namespace eb
