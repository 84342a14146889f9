/* Mutation fuzzer of the one model reader, through the C API: from a valid .eb file, flips bits,
 * overwrites bytes with boundary values (0, 0xff, 0x7f, 0x80) and truncates; the metadata CRC is
 * recomputed so the parser sees each change.  Every load must end in EB_OK (then a run must too,
 * or fail cleanly) or an error code: never a crash (run it under AddressSanitizer to catch
 * silent out-of-bounds reads as well).
 *
 *   fuzz_load MODEL.eb ITERATIONS SEED     -> prints "ok loaded=N refused=M" */
#include <eightbit/eightbit.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t crc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

static uint64_t rd64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

static void wr32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t state;
static uint64_t next(void) { /* splitmix64: the same sequence everywhere */
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  FILE* f = fopen(argv[1], "rb");
  if (f == NULL) return 2;
  fseek(f, 0, SEEK_END);
  const size_t size = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t* seed = malloc(size);
  uint8_t* buf = malloc(size);
  if (fread(seed, 1, size, f) != size) return 2;
  fclose(f);
  const uint64_t meta_off = rd64(seed + 24), meta_size = rd64(seed + 32);
  const long iterations = atol(argv[2]);
  state = (uint64_t)atoll(argv[3]);
  long loaded = 0, refused = 0;
  eb_error err;
  for (long it = 0; it < iterations; ++it) {
    memcpy(buf, seed, size);
    size_t n = size;
    const int edits = 1 + (int)(next() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = (size_t)(meta_off + next() % meta_size);
      switch (next() % 4) {
        case 0: buf[at] ^= (uint8_t)(1u << (next() % 8)); break;
        case 1: { static const uint8_t kEdge[] = {0x00, 0xff, 0x7f, 0x80}; buf[at] = kEdge[next() % 4]; break; }
        case 2: buf[at] = (uint8_t)next(); break;
        default: if (next() % 8 == 0) n = (size_t)(next() % size); break;
      }
    }
    if (n >= 64 && meta_off + meta_size <= n) wr32(buf + 56, crc32(buf + meta_off, meta_size));
    eb_model* m = NULL;
    if (eb_model_load_buffer(buf, n, NULL, &m, &err) != EB_OK) {
      if (m != NULL || err.code == EB_OK || err.message[0] == '\0') {
        printf("error without a message at iteration %ld\n", it);
        return 1;
      }
      ++refused;
      continue;
    }
    ++loaded;
    /* a file that still loads runs on zeros (batch 2), or fails cleanly */
    size_t n_in = eb_model_num_inputs(m), n_out = eb_model_num_outputs(m);
    const float** in = calloc(n_in + 1, sizeof(float*));
    float** out = calloc(n_out + 1, sizeof(float*));
    size_t* in_sizes = calloc(n_in + 1, sizeof(size_t));
    size_t* out_sizes = calloc(n_out + 1, sizeof(size_t));
    int ok = 1;
    for (size_t io = 0; io < n_in + n_out; ++io) {
      int64_t dims[8];
      size_t ndim = 0, count = 2;
      const int is_in = io < n_in;
      const size_t k = is_in ? io : io - n_in;
      if ((is_in ? eb_model_input_shape(m, k, dims, 8, &ndim, NULL) : eb_model_output_shape(m, k, dims, 8, &ndim, NULL)) != EB_OK || ndim > 8) {
        ok = 0;
        break;
      }
      for (size_t d = 1; d < ndim; ++d) count = dims[d] > 0 && count <= ((size_t)1 << 26) / (size_t)dims[d] ? count * (size_t)dims[d] : ((size_t)1 << 27);
      if (count > ((size_t)1 << 26)) { ok = 0; break; }  /* too large to try here */
      float* p = calloc(count + 1, sizeof(float));
      if (is_in) { in[k] = p; in_sizes[k] = count; } else { out[k] = p; out_sizes[k] = count; }
    }
    if (ok) eb_model_run(m, 2, in, in_sizes, out, out_sizes, &err);
    for (size_t k = 0; k < n_in; ++k) free((void*)in[k]);
    for (size_t k = 0; k < n_out; ++k) free(out[k]);
    free(in); free(out); free(in_sizes); free(out_sizes);
    eb_model_free(m);
  }
  printf("ok loaded=%ld refused=%ld\n", loaded, refused);
  free(seed);
  free(buf);
  return 0;
}
