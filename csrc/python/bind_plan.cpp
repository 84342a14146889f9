// Binding layer: the model file and the plan executor.  A model reaches C++
// as `.eb` bytes only (model/model_file.h): `ModelFile.map(path)` or
// `ModelFile.copy(bytes)` reads and checks them, `tree()` hands the parsed
// metadata to Python (arrays as read-only views of the file), `build()` makes
// the PlanExecutor (model/build.h); run() validates the inputs, allocates the
// outputs and runs the whole plan with the GIL released.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "model/build.h"
#include "model/model_file.h"
#include "python/convert.h"
#include "runtime/plan.h"
#include "runtime/thread_pool.h"

namespace eb::bind {
namespace {

py::dtype numpy_dtype(ElemType t) {
  if (t == ElemType::kFloat32) return py::dtype::of<float>();
  return t == ElemType::kInt8 ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>();
}

std::vector<py::ssize_t> shape_with_batch(const PlanTensor& t, int64_t batch) {
  std::vector<py::ssize_t> s(t.shape.begin(), t.shape.end());
  s[0] = batch;
  return s;
}

std::string shape_text(const PlanTensor& t) {
  std::string s = "(";
  for (size_t i = 0; i < t.shape.size(); ++i)
    s += (i ? ", " : "") + (i == 0 && t.shape[0] < 0         ? std::string("N")
                            : t.shape[i] == kSequenceDim ? std::string("S")
                                                         : std::to_string(t.shape[i]));
  return s + (t.shape.size() == 1 ? ",)" : ")");
}

std::string shape_text(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Runs a float step in Python: the inputs copied out of the arena, the result
// checked and copied in.
HostFn host_fn(const PlanExecutor* ex, std::vector<int> inputs, int output, py::function fn) {
  return [ex, inputs, output, fn](int64_t batch, const std::vector<const void*>& ins, void* out) {
    py::gil_scoped_acquire acquire;
    py::list args;
    for (size_t i = 0; i < ins.size(); ++i) {
      const PlanTensor& t = ex->tensor(inputs[i]);
      py::array a(numpy_dtype(t.type), shape_with_batch(t, batch));
      std::memcpy(a.mutable_data(), ins[i], static_cast<size_t>(batch * t.sample_bytes()));
      args.append(a);
    }
    const PlanTensor& yt = ex->tensor(output);
    py::array y = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(fn(args));
    const std::vector<py::ssize_t> want = shape_with_batch(yt, batch);
    if (!y || y.ndim() != static_cast<py::ssize_t>(want.size()) || !std::equal(want.begin(), want.end(), y.shape()))
      value_error("float step for '" + yt.name + "': expected a float32 result of shape " + shape_text(yt));
    std::memcpy(out, y.data(), static_cast<size_t>(batch * yt.sample_bytes()));
  };
}

// The plan inputs as C-contiguous float32 arrays of their specs' shapes, one batch (and one
// sequence length: the first input with that dimension sets it).
std::vector<py::array> check_inputs(const PlanExecutor& ex, const py::sequence& feeds, int64_t* batch, int64_t* seq) {
  const std::vector<int>& ids = ex.inputs();
  if (feeds.size() != ids.size())
    value_error("expected " + std::to_string(ids.size()) + " input(s), got " + std::to_string(feeds.size()));
  std::vector<py::array> arrays;
  for (size_t i = 0; i < ids.size(); ++i) {
    const PlanTensor& t = ex.tensor(ids[i]);
    const std::string name = "input '" + t.name + "'";
    py::object obj = feeds[i];
    py::array a = py::array::ensure(obj);
    if (!a) throw py::type_error(name + ": expected an array");
    const char kind = a.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u')
      throw py::type_error(name + ": expected float32 data, got " + dtype_name(a));
    // The constructor, unlike ensure(), raises NumPy's error (MemoryError for a copy too large).
    a = py::array_t<float, py::array::c_style | py::array::forcecast>(a);
    bool ok = a.ndim() == static_cast<py::ssize_t>(t.shape.size()) && (t.shape[0] < 0 || a.shape(0) == t.shape[0]);
    for (size_t d = 1; ok && d < t.shape.size(); ++d) {
      if (t.shape[d] == kSequenceDim && *seq == 0) {
        *seq = a.shape(d);
        if (*seq < ex.sequence_lo() || *seq > ex.sequence_hi())
          value_error(name + ": sequence length " + std::to_string(*seq) + " is outside the model's range " +
                      std::to_string(ex.sequence_lo()) + " to " + std::to_string(ex.sequence_hi()));
      }
      ok = a.shape(d) == (t.shape[d] == kSequenceDim ? *seq : t.shape[d]);
    }
    if (!ok) value_error(name + ": expected shape " + shape_text(t) + ", got " + shape_text(a));
    if (i == 0) *batch = a.shape(0);
    if (a.shape(0) != *batch)
      value_error(name + ": batch size " + std::to_string(a.shape(0)) + " differs from the first input's " +
                  std::to_string(*batch));
    arrays.push_back(std::move(a));
  }
  return arrays;
}

// One run's checked inputs and freshly allocated outputs (made with the GIL held).
struct PreparedRun {
  int64_t batch = 0, seq = 0;
  std::vector<py::array> in;
  std::vector<const float*> in_ptr;
  py::list out;
  std::vector<float*> out_ptr;
};

PreparedRun prepare_run(const PlanExecutor& ex, const py::sequence& feeds) {
  PreparedRun r;
  r.in = check_inputs(ex, feeds, &r.batch, &r.seq);
  for (const py::array& a : r.in) r.in_ptr.push_back(static_cast<const float*>(a.data()));
  for (int id : ex.outputs()) {
    std::vector<int64_t> shape = ex.shape_at(id, r.seq);
    shape[0] = r.batch;
    py::array_t<float> y(std::vector<py::ssize_t>(shape.begin(), shape.end()));
    r.out_ptr.push_back(y.mutable_data());
    r.out.append(y);
  }
  return r;
}

// Runs the plan; with step_seconds, the profiled run that times every step.
py::list run(PlanExecutor& ex, const py::sequence& feeds, std::vector<double>* step_seconds = nullptr) {
  PreparedRun r = prepare_run(ex, feeds);
  py::gil_scoped_release release;
  if (step_seconds == nullptr)
    ex.run(r.batch, r.in_ptr, r.out_ptr, r.seq);
  else
    ex.run_profiled(r.batch, r.in_ptr, r.out_ptr, step_seconds, r.seq);
  return r.out;
}

// Several executors on their inputs in one call: each run is one part of a thread pool job, so
// the runs go side by side, each on one thread (a step's own parallel loops run inline within a
// part), instead of one after another on every thread (an ensemble's members).
py::list run_many(const std::vector<PlanExecutor*>& executors, const std::vector<py::sequence>& feeds) {
  if (executors.size() != feeds.size())
    value_error("run_many: " + std::to_string(executors.size()) + " executors but " + std::to_string(feeds.size()) +
                " input lists");
  std::vector<PreparedRun> runs;
  for (size_t i = 0; i < executors.size(); ++i) {
    if (executors[i] == nullptr) throw py::type_error("run_many: executors must be PlanExecutors");
    runs.push_back(prepare_run(*executors[i], feeds[i]));
  }
  {
    py::gil_scoped_release release;
    ThreadPool::instance().run(static_cast<int>(runs.size()), [&](int i) {
      PreparedRun& r = runs[static_cast<size_t>(i)];
      executors[static_cast<size_t>(i)]->run(r.batch, r.in_ptr, r.out_ptr, r.seq);
    });
  }
  py::list outs;
  for (PreparedRun& r : runs) outs.append(r.out);
  return outs;
}

py::tuple run_profiled(PlanExecutor& ex, const py::sequence& feeds) {
  std::vector<double> seconds;
  py::list out = run(ex, feeds, &seconds);
  return py::make_tuple(out, seconds);
}

// {tensor name: (count, saturated, out_of_range or None)} for every monitored tensor.
py::dict monitor_stats(PlanExecutor& ex) {
  std::vector<TensorStats> stats;
  {
    py::gil_scoped_release release;  // a run in progress may need the GIL (a host step) before it unlocks
    stats = ex.stats();
  }
  py::dict out;
  for (size_t t = 0; t < stats.size(); ++t) {
    const TensorStats& st = stats[t];
    if (!st.monitored) continue;
    out[py::str(ex.tensor(static_cast<int>(t)).name)] =
        py::make_tuple(st.count, st.saturated, st.range_checked ? py::object(py::int_(st.out_of_range)) : py::none());
  }
  return out;
}

py::dtype numpy_dtype(ArrayDtype t) {
  switch (t) {
    case ArrayDtype::kUint8: return py::dtype::of<uint8_t>();
    case ArrayDtype::kInt8: return py::dtype::of<int8_t>();
    case ArrayDtype::kInt32: return py::dtype::of<int32_t>();
    case ArrayDtype::kFloat32: break;
  }
  return py::dtype::of<float>();
}

// The metadata tree as Python values: dicts, tuples, ints, floats, strings, None, and read-only
// NumPy views of the file's arrays that keep the file alive.
py::object to_python(const Value& v, const py::object& owner) {
  switch (v.kind) {
    case Value::Kind::kNone: return py::none();
    case Value::Kind::kBool: return py::bool_(v.b);
    case Value::Kind::kInt: return py::int_(v.i);
    case Value::Kind::kFloat: return py::float_(v.f);
    case Value::Kind::kString: return py::str(v.s);  // UTF-8: the reader checked
    case Value::Kind::kList: {
      py::tuple t(v.items.size());
      for (size_t i = 0; i < v.items.size(); ++i) t[i] = to_python(v.items[i], owner);
      return std::move(t);
    }
    case Value::Kind::kDict: {
      py::dict d;
      for (const auto& [k, item] : v.fields) d[py::str(k)] = to_python(item, owner);
      return std::move(d);
    }
    case Value::Kind::kArray: {
      const ArrayView& a = *v.array;
      // The data section is 64-byte aligned and every array starts at a multiple of 64.
      py::array arr(numpy_dtype(a.dtype), std::vector<py::ssize_t>(a.shape.begin(), a.shape.end()), a.data, owner);
      py::detail::array_proxy(arr.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
      return std::move(arr);
    }
  }
  return py::none();
}

// `host(step_index)` returns the Python function of a host step: called with the input arrays,
// it returns the float32 output.
std::unique_ptr<PlanExecutor> build(const ModelFile& file, int64_t max_arena_bytes, const py::object& host) {
  BuildOptions options;
  if (max_arena_bytes > 0) options.max_arena_bytes_per_sample = max_arena_bytes;
  if (!host.is_none())
    options.host = [host](size_t step, const PlanExecutor& ex, const std::vector<int>& inputs, int output,
                          const std::string&) {
      py::gil_scoped_acquire acquire;
      return host_fn(&ex, inputs, output, host(step).cast<py::function>());
    };
  py::gil_scoped_release release;  // packing runs in C++ (the host factory takes the GIL back)
  return build_executor(file.root(), options);
}

}  // namespace

void bind_plan(py::module_& m) {
  py::register_exception<ModelError>(m, "ModelFileError", PyExc_ValueError);
  py::register_exception<UnsupportedStep>(m, "UnsupportedStepError", PyExc_NotImplementedError);
  py::class_<ModelFile, std::shared_ptr<ModelFile>>(m, "ModelFile",
                                                    "A `.eb` model file read and checked by the C++ reader.")
      .def_static("map", [](const std::string& path) { return ModelFile::map(path); }, py::arg("path"),
                  py::call_guard<py::gil_scoped_release>(), "Memory-maps and checks a model file.")
      .def_static("copy",
                  [](const py::buffer& b) {
                    const py::buffer_info info = b.request();
                    if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1)
                      throw py::type_error("expected contiguous bytes");
                    return ModelFile::copy(info.ptr, static_cast<size_t>(info.size));
                  },
                  py::arg("data"), "Checks a copy of the bytes of a model file.")
      .def("tree", [](py::object self) { return to_python(self.cast<const ModelFile&>().root(), self); },
           "The metadata as Python values; arrays are read-only views of the file.")
      .def_property_readonly("version", [](const ModelFile& f) { return py::make_tuple(f.major_version(), f.minor_version()); })
      .def_property_readonly("size", &ModelFile::size)
      .def("build", &build, py::arg("max_arena_bytes") = 0, py::arg("host") = py::none(),
           "The PlanExecutor of the model; host(step) supplies the function of each host step.");
  m.def("build_model",
        [](const py::buffer& b, int64_t max_arena_bytes, const py::object& host) {
          const py::buffer_info info = b.request();
          if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1) throw py::type_error("expected contiguous bytes");
          std::shared_ptr<ModelFile> file;
          {
            py::gil_scoped_release release;
            file = ModelFile::borrow(info.ptr, static_cast<size_t>(info.size));  // read during this call only
          }
          return build(*file, max_arena_bytes, host);
        },
        py::arg("data"), py::arg("max_arena_bytes") = 0, py::arg("host") = py::none(),
        "ModelFile.build of the bytes of a model file, read in place during the call.");

  m.def("run_many", &run_many, py::arg("executors"), py::arg("inputs"),
        "Runs each executor on its list of float32 inputs, side by side on the thread pool (each run on "
        "one thread); returns each run's outputs.");
  py::class_<PlanExecutor>(m, "PlanExecutor",
                           "A quantized execution plan run by the C++ core in one call (ModelFile.build makes one).")
      .def("run", [](PlanExecutor& ex, const py::sequence& feeds) { return run(ex, feeds); }, py::arg("inputs"),
           "Runs the plan on a sequence of float32 arrays (one per plan input); returns the outputs as a list.")
      .def("run_profiled", &run_profiled, py::arg("inputs"),
           "run() timing every step: returns (outputs, [seconds per step]).")
      .def("set_monitoring", &PlanExecutor::set_monitoring, py::arg("on"), py::call_guard<py::gil_scoped_release>(),
           "Counts saturation and out-of-range values of every quantized tensor on each run while on.")
      .def_property_readonly("monitoring", [](PlanExecutor& ex) {
        py::gil_scoped_release release;
        return ex.monitoring();
      })
      .def("reset_stats", &PlanExecutor::reset_stats, py::call_guard<py::gil_scoped_release>())
      .def("stats", &monitor_stats,
           "{tensor name: (elements, saturated codes, float inputs out of range or None)} since the last reset.")
      .def("step_kernels", &PlanExecutor::step_kernels,
           "The kernel each step runs on the active path (as its run() chooses it); '' where the step's "
           "kind has one loop.")
      .def_property_readonly("const_bytes", &PlanExecutor::const_bytes)
      .def_property_readonly("num_steps", &PlanExecutor::num_steps)
      .def_property_readonly("arena_bytes", &PlanExecutor::arena_bytes)
      .def_property_readonly("arena_bytes_per_sample", &PlanExecutor::arena_bytes_per_sample)
      .def_property_readonly("last_run_seconds", &PlanExecutor::last_run_seconds);
}

}  // namespace eb::bind
