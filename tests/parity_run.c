/* The plugnet side of tests/parity_torch.sh:
 *   parity_run MODEL_FILE STATE IO OUT [--backend NAME] [key=value ...]
 * builds MODEL_FILE (key=value: its args) for the samples of IO's input x,
 * loads STATE (torchvision's state_dict), and for the evaluation pass, then
 * the training pass, runs the model forward and back-propagates sum(out * g)
 * (g from IO). OUT receives what parity_torch.py compares, under its names:
 * <mode>.out, <mode>.grad.input, <mode>.grad.<param>, train.buffer.<name>
 * (running statistics after the training pass), and <mode>.kink.<k>: the
 * input of the k-th relu, relu6 or max-pool node in graph order, whose
 * branch decisions (which side of a kink, which maximum) the reference
 * gradients follow (see parity_torch.py). */
#include <stdio.h>
#include <string.h>

#include <plugnet/plugnet.h>

#define MAX_ARGS 16
#define MAX_KINKS 256

static int fail(const char *what) {
  fprintf(stderr, "parity_run: %s: %s\n", what, pn_last_error());
  return 1;
}

/* A detached copy: the pass after this one zeroes gradients and reloads
 * buffers, possibly in place. */
static pn_status put_copy(pn_tensor_map *out, const char *mode, const char *what,
                          const char *name, pn_tensor *t) {
  char key[512];
  snprintf(key, sizeof key, "%s.%s%s%s", mode, what, name ? "." : "", name ? name : "");
  if (!t) return pn_error(PN_ERR_NOT_FOUND, "no tensor for '%s'", key);
  int was = pn_set_grad_enabled(0);
  pn_tensor *c = pn_copy(t);
  pn_set_grad_enabled(was);
  if (!c) return PN_ERR_NOMEM;
  pn_status s = pn_tensor_map_put(out, key, c);
  pn_tensor_unref(c);
  return s;
}

/* Nodes whose gradient is discontinuous in their input. */
static int is_kink(const char *feature) {
  return strcmp(feature, "relu") == 0 || strcmp(feature, "relu6") == 0 ||
         strcmp(feature, "max_pool2d") == 0;
}

/* Makes the model also return the input of every kink node, after its own
 * output; kinks[k] is the output slot holding the k-th. */
static pn_status expose_kinks(pn_model *m, int *kinks, int *n_kinks) {
  const char *names[MAX_KINKS + 1];
  int n = 0;
  names[n++] = pn_model_output_name(m, 0);
  *n_kinks = 0;
  for (int i = 0; i < pn_model_layer_count(m); i++) {
    const int *in;
    if (!is_kink(pn_model_node_feature(m, i)) || pn_model_node_inputs(m, i, &in) < 1) continue;
    if (in[0] < 0) return pn_error(PN_ERR_INVALID, "a kink node fed by the model's input");
    const char *name = pn_layer_name(pn_model_layer(m, in[0]));
    int slot = 0;
    while (slot < n && strcmp(names[slot], name) != 0) slot++;
    if (slot == n) {
      if (n == MAX_KINKS + 1) return pn_error(PN_ERR_INVALID, "more than %d kinks", MAX_KINKS);
      names[n++] = name;
    }
    kinks[(*n_kinks)++] = slot;
  }
  return pn_model_set_outputs(m, names, n);
}

static pn_status collect_kinks(pn_tensor *const *ys, const int *kinks, int n_kinks,
                               const char *mode, pn_tensor_map *out) {
  for (int k = 0; k < n_kinks; k++) {
    char name[32];
    snprintf(name, sizeof name, "%d", k);
    PN_TRY(put_copy(out, mode, "kink", name, ys[kinks[k]]));
  }
  return PN_OK;
}

static pn_status collect(pn_model *m, pn_tensor *x, pn_tensor *y, int train, pn_tensor_map *out) {
  const char *mode = train ? "train" : "eval";
  PN_TRY(put_copy(out, mode, "out", NULL, y));
  PN_TRY(put_copy(out, mode, "grad.input", NULL, pn_tensor_grad(x)));
  for (int i = 0; i < pn_model_param_count(m); i++) {
    pn_tensor *p = pn_model_param(m, i);
    PN_TRY(put_copy(out, mode, "grad", p->name, pn_tensor_grad(p)));
  }
  for (int i = 0; train && i < pn_model_buffer_count(m); i++) {
    pn_tensor *b = pn_model_buffer(m, i);
    PN_TRY(put_copy(out, mode, "buffer", b->name, b));
  }
  return PN_OK;
}

/* One pass from the loaded state: forward in the given mode, backward of
 * sum(out * g). */
static pn_status run_pass(pn_model *m, const pn_tensor_map *state, const pn_tensor_map *io,
                          const int *kinks, int n_kinks, int train, pn_tensor_map *out) {
  PN_TRY(pn_model_load_state(m, state, 1));
  for (int i = 0; i < pn_model_param_count(m); i++) pn_tensor_zero_grad(pn_model_param(m, i));
  pn_model_set_training(m, train);
  pn_tensor *x = pn_copy(pn_tensor_map_get(io, "x"));
  if (!x) return PN_ERR_NOMEM;
  pn_tensor_set_requires_grad(x, 1);
  pn_tensor *ys[MAX_KINKS + 1] = {NULL};
  int n_out = pn_model_output_count(m);
  pn_status s = pn_model_forward_all(m, x, ys);
  if (s == PN_OK) s = pn_backward(ys[0], pn_tensor_map_get(io, "g"));
  if (s == PN_OK) s = collect(m, x, ys[0], train, out);
  if (s == PN_OK) s = collect_kinks(ys, kinks, n_kinks, train ? "train" : "eval", out);
  for (int i = 0; i < n_out; i++) pn_tensor_unref(ys[i]);
  pn_tensor_unref(x);
  return s;
}

static int run(const char *model_file, const char *state_path, const char *io_path,
               const char *out_path, char *const *args, int n_args) {
  pn_tensor_map *state = NULL, *io = NULL, *out = pn_tensor_map_new();
  pn_model *m = NULL;
  int rc = 1;
  if (pn_safetensors_load(state_path, NULL, &state) != PN_OK) {
    fail(state_path);
  } else if (pn_safetensors_load(io_path, NULL, &io) != PN_OK) {
    fail(io_path);
  } else if (!pn_tensor_map_get(io, "x") || !pn_tensor_map_get(io, "g")) {
    fprintf(stderr, "parity_run: %s lacks x or g\n", io_path);
  } else {
    pn_tensor *x = pn_tensor_map_get(io, "x");
    pn_shape sample = pn_shape_make(x->ndim - 1, x->shape + 1);
    int kinks[MAX_KINKS], n_kinks = 0;
    if (pn_model_from_file(model_file, args, n_args, &sample, &m) != PN_OK) fail(model_file);
    else if (expose_kinks(m, kinks, &n_kinks) != PN_OK) fail("kinks");
    else if (pn_model_to(m, pn_default_device()) != PN_OK) fail("moving the model");
    else if (run_pass(m, state, io, kinks, n_kinks, 0, out) != PN_OK) fail("evaluation pass");
    else if (run_pass(m, state, io, kinks, n_kinks, 1, out) != PN_OK) fail("training pass");
    else if (pn_safetensors_save(out_path, out) != PN_OK) fail(out_path);
    else rc = 0;
  }
  pn_model_free(m);
  pn_tensor_map_free(out);
  pn_tensor_map_free(io);
  pn_tensor_map_free(state);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: parity_run MODEL_FILE STATE IO OUT [--backend NAME] [key=value ...]\n");
    return 2;
  }
  char *args[MAX_ARGS];
  int n_args = 0;
  for (int i = 5; i < argc; i++) {
    if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
      pn_device *dev;
      if (pn_device_get(argv[++i], &dev) != PN_OK) return fail(argv[i]);
      pn_set_default_device(dev);
    } else if (n_args < MAX_ARGS && strchr(argv[i], '=')) {
      args[n_args++] = argv[i];
    } else {
      fprintf(stderr, "parity_run: unexpected argument '%s'\n", argv[i]);
      return 2;
    }
  }
  int rc = run(argv[1], argv[2], argv[3], argv[4], args, n_args);
  pn_registry_reset();
  return rc;
}
