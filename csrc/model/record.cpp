// Model layer: typed access to a record (see record.h).
#include "model/record.h"

#include <utility>

namespace eb {
namespace {

const char* kind_name(Value::Kind k) {
  static const char* const kNames[] = {"none", "bool", "int", "float", "string", "list", "dict", "array"};
  return kNames[static_cast<int>(k)];
}

std::string quoted(const char* key) { return std::string("'") + key + "'"; }

}  // namespace

Record::Record(const Value* v, std::string where) : v_(v), where_(std::move(where)) {
  if (v_ == nullptr || v_->kind != Kind::kDict) bad("expected a dict");
}

void Record::bad(const std::string& what) const { throw ModelError(where_ + ": " + what); }

const Value& Record::get(const char* key, Kind kind) const {
  const Value* v = v_->find(key);
  if (v == nullptr) bad("missing " + quoted(key));
  if (v->kind != kind) bad(quoted(key) + " must be a " + kind_name(kind) + ", got a " + kind_name(v->kind));
  return *v;
}

bool Record::has(const char* key) const {
  const Value* v = v_->find(key);
  return v != nullptr && v->kind != Kind::kNone;
}

Record Record::dict(const char* key) const { return Record(&get(key, Kind::kDict), where_ + "." + key); }

int32_t Record::int32(const char* key, int64_t lo, int64_t hi) const {
  const int64_t v = integer(key);
  if (v < lo || v > hi)
    bad(quoted(key) + " = " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int32_t>(v);
}

double Record::real(const char* key) const {
  const Value* v = v_->find(key);
  if (v == nullptr) bad("missing " + quoted(key));
  if (v->kind == Kind::kInt) return static_cast<double>(v->i);
  if (v->kind != Kind::kFloat) bad(quoted(key) + " must be a number");
  return v->f;
}

std::vector<int64_t> Record::ints(const char* key, size_t n) const {
  const Value& l = get(key, Kind::kList);
  if (n != 0 && l.items.size() != n) bad(quoted(key) + " must hold " + std::to_string(n) + " ints");
  std::vector<int64_t> out;
  for (const Value& v : l.items) {
    if (v.kind != Kind::kInt) bad(quoted(key) + " must hold ints");
    out.push_back(v.i);
  }
  return out;
}

std::array<int64_t, 2> Record::pair(const char* key) const {
  const auto v = ints(key, 2);
  return {v[0], v[1]};
}

std::array<int64_t, 4> Record::quad(const char* key) const {
  const auto v = ints(key, 4);
  return {v[0], v[1], v[2], v[3]};
}

const ArrayView& Record::array(const char* key, ArrayDtype dtype, const char* dtype_name) const {
  const ArrayView& a = *get(key, Kind::kArray).array;
  if (a.dtype != dtype) bad(quoted(key) + " must be a " + dtype_name + " array");
  return a;
}

}  // namespace eb
