// Core utility: an owning, 64-byte-aligned, zero-initialised byte buffer (RAII).
// Packed weights and per-call scratch live in these so that SIMD loads of a
// whole cache line never straddle an allocation boundary.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace eb {

template <typename T>
class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t count) { resize(count); }

  // Discards the contents; the new storage is zero-filled unless `zero` is
  // false.  kSlack extra bytes past the end are readable, so kernels may
  // over-read a tail safely.
  void resize(std::size_t count, bool zero = true) {
    const std::size_t bytes = (count * sizeof(T) + kSlack + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, bytes);
    if (p == nullptr) throw std::bad_alloc();
    if (zero) std::memset(p, 0, bytes);
    data_.reset(static_cast<T*>(p));
    size_ = count;
  }

  // Grows only; keeps no contents.  For scratch reused across calls.
  void reserve_discard(std::size_t count) {
    if (count > size_ || !data_) resize(count, /*zero=*/false);
  }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return data_.get()[i]; }
  const T& operator[](std::size_t i) const { return data_.get()[i]; }

 private:
  static constexpr std::size_t kSlack = 64;
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  std::size_t size_ = 0;
};

}  // namespace eb
