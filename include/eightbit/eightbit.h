/* eightbit C API: load a `.eb` model (written by eightbit.quantize / QuantizedModel.save) and run
 * it, without Python.  Link with -leightbit (and -lpthread, -lstdc++ for the static library).
 *
 * Every function returns an eb_status; on failure it also fills `error` when not NULL (a code and
 * a message naming what is wrong).  No C++ exception crosses this interface, and a model that is
 * truncated, corrupted or hostile is refused at load with EB_INVALID_MODEL, never read out of
 * bounds.  docs/c_api.md has the details and examples/run_model.c a whole program. */
#ifndef EIGHTBIT_EIGHTBIT_H_
#define EIGHTBIT_EIGHTBIT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define EB_API __declspec(dllexport)
#else
#define EB_API __attribute__((visibility("default")))
#endif

typedef enum eb_status {
  EB_OK = 0,
  EB_INVALID_ARGUMENT = 1, /* a NULL pointer, a wrong index, shape, batch or buffer size */
  EB_INVALID_MODEL = 2,    /* the file is not a valid model (truncated, corrupted, hostile, other version) */
  EB_UNSUPPORTED = 3,      /* a valid model this library cannot run (a step that needs Python) */
  EB_OUT_OF_MEMORY = 4,    /* an allocation failed, or a limit (max_arena_bytes) was reached */
  EB_IO_ERROR = 5,         /* the file cannot be opened or mapped */
  EB_INTERNAL = 6
} eb_status;

typedef struct eb_error {
  eb_status code;
  char message[512];
} eb_error;

/* Load options: set struct_size = sizeof(eb_load_options), 0 in a field keeps its default. */
typedef struct eb_load_options {
  size_t struct_size;
  /* Intermediate tensor bytes one batch item may need (default 4 GiB); a larger model is refused. */
  int64_t max_arena_bytes;
} eb_load_options;

typedef struct eb_model eb_model;

/* The library's version, e.g. "0.2.0". */
EB_API const char* eb_version(void);

/* Loads a model file (memory-mapped while loading), or `size` bytes at `data` (read during the
 * call only).  `options` may be NULL.  *model is set only on success; free it with eb_model_free. */
EB_API eb_status eb_model_load_file(const char* path, const eb_load_options* options, eb_model** model, eb_error* error);
EB_API eb_status eb_model_load_buffer(const void* data, size_t size, const eb_load_options* options, eb_model** model,
                                      eb_error* error);
EB_API void eb_model_free(eb_model* model);

/* Inputs and outputs: float32, C-contiguous, in the float model's layout (NCHW for images).
 * Names stay valid while the model lives.  Shapes: dims[0] is -1 where the batch is free. */
EB_API size_t eb_model_num_inputs(const eb_model* model);
EB_API size_t eb_model_num_outputs(const eb_model* model);
EB_API const char* eb_model_input_name(const eb_model* model, size_t index);
EB_API const char* eb_model_output_name(const eb_model* model, size_t index);
/* Writes at most `capacity` dims and sets *ndim to the rank.  dims[0] is -1 where the batch is
 * free; a dimension is EB_SEQUENCE_DIM where the model takes any sequence length in its range. */
EB_API eb_status eb_model_input_shape(const eb_model* model, size_t index, int64_t* dims, size_t capacity,
                                      size_t* ndim, eb_error* error);
EB_API eb_status eb_model_output_shape(const eb_model* model, size_t index, int64_t* dims, size_t capacity,
                                       size_t* ndim, eb_error* error);

#define EB_SEQUENCE_DIM (-2)

/* The sequence lengths a model takes: [*lo, *hi], or 0 and 0 for a model without one. */
EB_API eb_status eb_model_sequence_range(const eb_model* model, int64_t* lo, int64_t* hi, eb_error* error);

/* Runs `batch` items.  inputs[i] holds input i (its shape with dims[0] = batch, input_sizes[i]
 * floats), outputs[i] receives output i (output_sizes[i] floats, at least its shape's count).
 * Thread-safe: concurrent calls on one model run one after the other.  A model with a sequence
 * dimension refuses it: use eb_model_run_sequence. */
EB_API eb_status eb_model_run(eb_model* model, int64_t batch, const float* const* inputs, const size_t* input_sizes,
                              float* const* outputs, const size_t* output_sizes, eb_error* error);

/* eb_model_run at sequence length `seq` (every EB_SEQUENCE_DIM of the shapes; ignored by a
 * model without one). */
EB_API eb_status eb_model_run_sequence(eb_model* model, int64_t batch, int64_t seq, const float* const* inputs,
                                       const size_t* input_sizes, float* const* outputs, const size_t* output_sizes,
                                       eb_error* error);

/* Process-wide settings: worker threads (n >= 1) and the instruction set ("scalar", "avx2",
 * "avxvnni", "avx512vnni", "amx"; the default is the fastest this CPU runs). */
EB_API eb_status eb_set_num_threads(int n, eb_error* error);
EB_API int eb_get_num_threads(void);
EB_API eb_status eb_set_isa(const char* name, eb_error* error);

#ifdef __cplusplus
}
#endif

#endif /* EIGHTBIT_EIGHTBIT_H_ */
