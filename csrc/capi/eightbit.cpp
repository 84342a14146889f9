// The C API (include/eightbit/eightbit.h): a thin shell over ModelFile,
// build_executor and PlanExecutor that turns every C++ exception into a
// status code and a message.
#include "eightbit/eightbit.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "model/build.h"
#include "model/model_file.h"
#include "runtime/dispatch.h"
#include "runtime/plan.h"
#include "runtime/thread_pool.h"

#ifndef EB_VERSION
#define EB_VERSION "unknown"
#endif

struct eb_model {
  std::unique_ptr<eb::PlanExecutor> executor;
};

namespace {

eb_status fail(eb_error* error, eb_status code, const std::string& message) {
  if (error != nullptr) {
    error->code = code;
    std::snprintf(error->message, sizeof error->message, "%s", message.c_str());
  }
  return code;
}

// Runs `fn`, mapping each exception to its status.
template <typename Fn>
eb_status guarded(eb_error* error, Fn&& fn) {
  try {
    fn();
    if (error != nullptr) {
      error->code = EB_OK;
      error->message[0] = '\0';
    }
    return EB_OK;
  } catch (const eb::ArenaLimitError& e) {
    return fail(error, EB_OUT_OF_MEMORY, e.what());
  } catch (const eb::ModelError& e) {
    return fail(error, EB_INVALID_MODEL, e.what());
  } catch (const eb::UnsupportedStep& e) {
    return fail(error, EB_UNSUPPORTED, e.what());
  } catch (const std::system_error& e) {
    return fail(error, EB_IO_ERROR, e.what());
  } catch (const std::bad_alloc&) {
    return fail(error, EB_OUT_OF_MEMORY, "out of memory");
  } catch (const std::length_error& e) {
    return fail(error, EB_OUT_OF_MEMORY, e.what());
  } catch (const std::invalid_argument& e) {
    return fail(error, EB_INVALID_ARGUMENT, e.what());
  } catch (const std::exception& e) {
    return fail(error, EB_INTERNAL, e.what());
  } catch (...) {
    return fail(error, EB_INTERNAL, "unknown error");
  }
}

eb::BuildOptions build_options(const eb_load_options* options) {
  eb::BuildOptions b;
  if (options != nullptr && options->struct_size >= offsetof(eb_load_options, max_arena_bytes) + sizeof(int64_t) &&
      options->max_arena_bytes > 0)
    b.max_arena_bytes_per_sample = options->max_arena_bytes;
  return b;
}

eb_status load(const std::shared_ptr<eb::ModelFile>* file_out, const eb_load_options* options, eb_model** model,
               eb_error* error) {
  return guarded(error, [&] {
    auto m = std::make_unique<eb_model>();
    m->executor = eb::build_executor((*file_out)->root(), build_options(options));
    *model = m.release();
  });
}

const eb::PlanTensor* io_tensor(const eb_model* model, size_t index, bool input) {
  if (model == nullptr) return nullptr;
  const std::vector<int>& ids = input ? model->executor->inputs() : model->executor->outputs();
  return index < ids.size() ? &model->executor->tensor(ids[index]) : nullptr;
}

eb_status shape_of(const eb::PlanTensor* t, int64_t* dims, size_t capacity, size_t* ndim, eb_error* error) {
  if (t == nullptr || ndim == nullptr || (dims == nullptr && capacity > 0))
    return fail(error, EB_INVALID_ARGUMENT, "no such tensor, or a NULL pointer");
  *ndim = t->shape.size();
  // -1: the batch; EB_SEQUENCE_DIM (-2, eb::kSequenceDim): the sequence length
  for (size_t i = 0; i < std::min(capacity, t->shape.size()); ++i) dims[i] = i == 0 && t->shape[0] < 0 ? -1 : t->shape[i];
  return EB_OK;
}

// Floats per batch item of tensor `id` at sequence length `seq` (the count fits: the executor
// checked it at the longest sequence).
uint64_t sample_floats(const eb::PlanExecutor& ex, int id, int64_t seq) {
  uint64_t n = 1;
  const std::vector<int64_t> shape = ex.shape_at(id, seq);
  for (size_t d = 1; d < shape.size(); ++d) n *= static_cast<uint64_t>(shape[d]);
  return n;
}

}  // namespace

extern "C" {

const char* eb_version(void) { return EB_VERSION; }

eb_status eb_model_load_file(const char* path, const eb_load_options* options, eb_model** model, eb_error* error) {
  if (path == nullptr || model == nullptr) return fail(error, EB_INVALID_ARGUMENT, "path and model must not be NULL");
  std::shared_ptr<eb::ModelFile> file;
  const eb_status s = guarded(error, [&] { file = eb::ModelFile::map(path); });
  return s != EB_OK ? s : load(&file, options, model, error);
}

eb_status eb_model_load_buffer(const void* data, size_t size, const eb_load_options* options, eb_model** model,
                               eb_error* error) {
  if ((data == nullptr && size > 0) || model == nullptr)
    return fail(error, EB_INVALID_ARGUMENT, "data and model must not be NULL");
  std::shared_ptr<eb::ModelFile> file;
  const eb_status s = guarded(error, [&] { file = eb::ModelFile::borrow(data, size); });
  return s != EB_OK ? s : load(&file, options, model, error);
}

void eb_model_free(eb_model* model) { delete model; }

size_t eb_model_num_inputs(const eb_model* model) { return model ? model->executor->inputs().size() : 0; }
size_t eb_model_num_outputs(const eb_model* model) { return model ? model->executor->outputs().size() : 0; }

const char* eb_model_input_name(const eb_model* model, size_t index) {
  const eb::PlanTensor* t = io_tensor(model, index, true);
  return t ? t->name.c_str() : nullptr;
}

const char* eb_model_output_name(const eb_model* model, size_t index) {
  const eb::PlanTensor* t = io_tensor(model, index, false);
  return t ? t->name.c_str() : nullptr;
}

eb_status eb_model_input_shape(const eb_model* model, size_t index, int64_t* dims, size_t capacity, size_t* ndim,
                               eb_error* error) {
  return shape_of(io_tensor(model, index, true), dims, capacity, ndim, error);
}

eb_status eb_model_output_shape(const eb_model* model, size_t index, int64_t* dims, size_t capacity, size_t* ndim,
                                eb_error* error) {
  return shape_of(io_tensor(model, index, false), dims, capacity, ndim, error);
}

eb_status eb_model_sequence_range(const eb_model* model, int64_t* lo, int64_t* hi, eb_error* error) {
  if (model == nullptr || lo == nullptr || hi == nullptr)
    return fail(error, EB_INVALID_ARGUMENT, "model, lo and hi must not be NULL");
  *lo = model->executor->sequence_lo();
  *hi = model->executor->sequence_hi();
  return EB_OK;
}

eb_status eb_model_run(eb_model* model, int64_t batch, const float* const* inputs, const size_t* input_sizes,
                       float* const* outputs, const size_t* output_sizes, eb_error* error) {
  if (model != nullptr && model->executor->has_sequence())
    return fail(error, EB_INVALID_ARGUMENT, "the model has a sequence dimension: call eb_model_run_sequence");
  return eb_model_run_sequence(model, batch, 0, inputs, input_sizes, outputs, output_sizes, error);
}

eb_status eb_model_run_sequence(eb_model* model, int64_t batch, int64_t seq, const float* const* inputs,
                                const size_t* input_sizes, float* const* outputs, const size_t* output_sizes,
                                eb_error* error) {
  if (model == nullptr || (inputs == nullptr && eb_model_num_inputs(model) > 0) || outputs == nullptr ||
      input_sizes == nullptr || output_sizes == nullptr)
    return fail(error, EB_INVALID_ARGUMENT, "model, inputs, sizes and outputs must not be NULL");
  eb::PlanExecutor& ex = *model->executor;
  if (batch < 1) return fail(error, EB_INVALID_ARGUMENT, "batch must be >= 1");
  if (ex.has_sequence() && (seq < ex.sequence_lo() || seq > ex.sequence_hi()))
    return fail(error, EB_INVALID_ARGUMENT, "sequence length " + std::to_string(seq) + " is outside the model's range " +
                                                std::to_string(ex.sequence_lo()) + " to " + std::to_string(ex.sequence_hi()));
  // Floats tensor `id` holds for this batch and length; 0 when that overflows size_t.
  auto floats_for = [&](int id) -> uint64_t {
    const uint64_t per_sample = sample_floats(ex, id, seq);
    return per_sample > 0 && static_cast<uint64_t>(batch) > SIZE_MAX / per_sample ? 0 : batch * per_sample;
  };
  std::vector<const float*> in;
  std::vector<float*> out;
  for (size_t i = 0; i < ex.inputs().size(); ++i) {
    const eb::PlanTensor& t = ex.tensor(ex.inputs()[i]);
    if (t.shape[0] >= 0 && batch != t.shape[0])
      return fail(error, EB_INVALID_ARGUMENT, "input '" + t.name + "' has a fixed batch of " + std::to_string(t.shape[0]));
    const uint64_t n = floats_for(ex.inputs()[i]);
    if (n == 0 && sample_floats(ex, ex.inputs()[i], seq) > 0) return fail(error, EB_INVALID_ARGUMENT, "batch too large");
    if (inputs[i] == nullptr || input_sizes[i] != n)
      return fail(error, EB_INVALID_ARGUMENT, "input '" + t.name + "' must be " + std::to_string(n) +
                                                  " floats for a batch of " + std::to_string(batch));
    in.push_back(inputs[i]);
  }
  for (size_t i = 0; i < ex.outputs().size(); ++i) {
    const eb::PlanTensor& t = ex.tensor(ex.outputs()[i]);
    const uint64_t n = floats_for(ex.outputs()[i]);
    if (n == 0 && sample_floats(ex, ex.outputs()[i], seq) > 0) return fail(error, EB_INVALID_ARGUMENT, "batch too large");
    if (outputs[i] == nullptr || output_sizes[i] < n)
      return fail(error, EB_INVALID_ARGUMENT, "output '" + t.name + "' needs " + std::to_string(n) +
                                                  " floats for a batch of " + std::to_string(batch));
    out.push_back(outputs[i]);
  }
  return guarded(error, [&] { ex.run(batch, in, out, seq); });
}

eb_status eb_set_num_threads(int n, eb_error* error) {
  if (n < 1) return fail(error, EB_INVALID_ARGUMENT, "the thread count must be >= 1");
  return guarded(error, [&] { eb::ThreadPool::instance().set_num_threads(n); });
}

int eb_get_num_threads(void) { return eb::ThreadPool::instance().num_threads(); }

eb_status eb_set_isa(const char* name, eb_error* error) {
  if (name == nullptr) return fail(error, EB_INVALID_ARGUMENT, "name must not be NULL");
  return guarded(error, [&] { eb::set_isa(name); });
}

}  // extern "C"
