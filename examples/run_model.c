/* Loads a .eb model with the eightbit C library and runs it on raw float32 input files.
 *
 *   run_model MODEL.eb BATCH INPUT0.f32 [INPUT1.f32 ...]
 *   run_model MODEL.eb BATCHxLENGTH INPUT0.f32 [...]     (a model with a sequence dimension)
 *
 * Each input file holds the input's values for BATCH items (C order, little-endian float32, the
 * float model's layout).  Prints, per output, a line "output NAME d0 d1 ..." and then every value
 * in C's exact hexadecimal form (%a), one per line.  EIGHTBIT_ISA=NAME forces a kernel path.
 * Build (docs/c_api.md):
 *
 *   cc run_model.c $(eightbit c-flags) -o run_model
 */
#include <eightbit/eightbit.h>

#include <stdio.h>
#include <stdlib.h>

static float* read_floats(const char* path, size_t count) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) return NULL;
  float* data = malloc(count * sizeof(float) + 1);
  if (data != NULL && fread(data, sizeof(float), count, f) != count) {
    free(data);
    data = NULL;
  }
  fclose(f);
  return data;
}

/* A dimension's extent in a run of sequence length `seq`. */
static int64_t extent(int64_t dim, int64_t seq) { return dim == EB_SEQUENCE_DIM ? seq : dim; }

/* Elements per batch item of a shape (dims[0] is the batch). */
static size_t per_item(const int64_t* dims, size_t ndim, int64_t seq) {
  size_t n = 1;
  for (size_t d = 1; d < ndim; ++d) n *= (size_t)extent(dims[d], seq);
  return n;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.eb BATCH INPUT0.f32 [INPUT1.f32 ...]\n", argv[0]);
    return 2;
  }
  eb_error err;
  eb_model* model = NULL;
  /* EIGHTBIT_ISA forces an instruction-set path, as in the Python package. */
  const char* isa = getenv("EIGHTBIT_ISA");
  if (isa != NULL && *isa != '\0' && eb_set_isa(isa, &err) != EB_OK) {
    fprintf(stderr, "EIGHTBIT_ISA: %s\n", err.message);
    return 2;
  }
  if (eb_model_load_file(argv[1], NULL, &model, &err) != EB_OK) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], err.message);
    return 1;
  }
  char* rest = NULL;
  const int64_t batch = strtoll(argv[2], &rest, 10);
  const int64_t seq = *rest == 'x' ? atoll(rest + 1) : 0;
  int64_t lo = 0, hi = 0;
  eb_model_sequence_range(model, &lo, &hi, NULL);
  const size_t n_in = eb_model_num_inputs(model), n_out = eb_model_num_outputs(model);
  if ((size_t)argc != 3 + n_in || batch < 1 || (hi > 0 && (seq < lo || seq > hi))) {
    fprintf(stderr, "the model has %zu input(s): give a batch >= 1 (BATCHxLENGTH, LENGTH in [%lld, %lld], for a "
            "model with a sequence dimension) and one file per input\n", n_in, (long long)lo, (long long)hi);
    eb_model_free(model);
    return 2;
  }
  int status = 1;
  float** in = calloc(n_in + 1, sizeof(float*));
  float** out = calloc(n_out + 1, sizeof(float*));
  size_t* in_sizes = calloc(n_in + 1, sizeof(size_t));
  size_t* out_sizes = calloc(n_out + 1, sizeof(size_t));
  int64_t dims[8];
  size_t ndim = 0;
  for (size_t i = 0; i < n_in; ++i) {
    eb_model_input_shape(model, i, dims, 8, &ndim, NULL);
    in_sizes[i] = (size_t)batch * per_item(dims, ndim, seq);
    in[i] = read_floats(argv[3 + i], in_sizes[i]);
    if (in[i] == NULL) {
      fprintf(stderr, "cannot read %zu floats from %s\n", in_sizes[i], argv[3 + i]);
      goto done;
    }
  }
  for (size_t i = 0; i < n_out; ++i) {
    eb_model_output_shape(model, i, dims, 8, &ndim, NULL);
    out_sizes[i] = (size_t)batch * per_item(dims, ndim, seq);
    out[i] = malloc(out_sizes[i] * sizeof(float) + 1);
  }
  if (eb_model_run_sequence(model, batch, seq, (const float* const*)in, in_sizes, out, out_sizes, &err) != EB_OK) {
    fprintf(stderr, "run failed: %s\n", err.message);
    goto done;
  }
  for (size_t i = 0; i < n_out; ++i) {
    eb_model_output_shape(model, i, dims, 8, &ndim, NULL);
    printf("output %s %lld", eb_model_output_name(model, i), (long long)batch);
    for (size_t d = 1; d < ndim; ++d) printf(" %lld", (long long)extent(dims[d], seq));
    printf("\n");
    for (size_t k = 0; k < out_sizes[i]; ++k) printf("%a\n", out[i][k]);
  }
  status = 0;
done:
  for (size_t i = 0; i < n_in; ++i) free(in[i]);
  for (size_t i = 0; i < n_out; ++i) free(out[i]);
  free(in);
  free(out);
  free(in_sizes);
  free(out_sizes);
  eb_model_free(model);
  return status;
}
