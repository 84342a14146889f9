// Kernel layer: the AMX tile configuration (palette 1) that `ldtilecfg` loads, shared by the
// AMX units (the int8 GEMM and the block-quantized layer).
#pragma once

#include <cstdint>

namespace eb {

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of each tile
  uint8_t rows[16] = {};
};

}  // namespace eb
