// Kernel layer: how a block's rows are cut into micro-tiles (shared by the
// tile kernels of every ISA).
#pragma once

#include <cstdint>

namespace eb {
namespace {  // internal linkage: compiled into units with different ISA flags

// Rows split into as few tiles of at most `max_rows` as possible, of heights
// that differ by at most one (49 = 4 x 6 + 5 x 5, 16 = 8 + 8), so that no tile
// is left with a row or two that cannot fill the vector ports.
class TileSplit {
 public:
  TileSplit(int64_t rows, int max_rows)
      : tiles_((rows + max_rows - 1) / max_rows),
        base_(tiles_ > 0 ? rows / tiles_ : 0),
        taller_(tiles_ > 0 ? rows % tiles_ : 0) {}
  int rows(int64_t t) const { return static_cast<int>(base_ + (t < taller_ ? 1 : 0)); }

 private:
  int64_t tiles_, base_, taller_;
};

}  // namespace
}  // namespace eb
