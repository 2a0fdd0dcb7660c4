/* Times a zoo model on the cpu backend: an inference forward (eval mode,
 * no gradients) or a training step (forward, cross-entropy, backward, SGD
 * with momentum), on random input. bench/models/run.sh runs it beside
 * torchvision's model in PyTorch on the same threads and prints the ratio.
 *
 *   bench_models MODEL infer|train BATCH SIZE REPS
 *
 * Prints one line: "MODEL MODE batch B: best S s, median S s". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <plugnet/plugnet.h>

#include "../benchutil.h"

static int die(const char *what) {
  fprintf(stderr, "bench_models: %s: %s\n", what, pn_last_error());
  return 1;
}

static pn_optimizer *sgd(pn_model *m) {
  int n = pn_model_param_count(m);
  pn_tensor **params = calloc((size_t)n, sizeof *params);
  for (int i = 0; i < n; i++) params[i] = pn_model_param(m, i);
  const pn_feature_info *f = pn_registry_find("sgd");
  pn_config *cfg = f ? pn_config_new(f) : NULL;
  pn_optimizer *o = NULL;
  if (!cfg || pn_config_set_list(cfg, "lr=0.01,momentum=0.9") != PN_OK ||
      pn_optimizer_create("sgd", cfg, params, n, &o) != PN_OK)
    o = NULL;
  pn_config_free(cfg);
  free(params);
  return o;
}

static pn_status train_step(pn_model *m, pn_loss *loss, pn_optimizer *o, pn_tensor *x,
                            pn_tensor *y) {
  pn_tensor *out = NULL, *l = NULL;
  pn_optimizer_zero_grad(o);
  PN_TRY(pn_model_forward(m, x, &out));
  pn_status s = pn_loss_forward(loss, out, y, &l);
  if (s == PN_OK) s = pn_backward(l, NULL);
  if (s == PN_OK) s = pn_optimizer_step(o, 0.01, -1);
  pn_tensor_unref(l);
  pn_tensor_unref(out);
  return s;
}

static pn_status infer(pn_model *m, pn_tensor *x) {
  int was = pn_set_grad_enabled(0);
  pn_tensor *out = NULL;
  pn_status s = pn_model_forward(m, x, &out);
  pn_tensor_unref(out);
  pn_set_grad_enabled(was);
  return s;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: bench_models MODEL infer|train BATCH SIZE REPS\n");
    return 2;
  }
  const char *name = argv[1];
  int training = strcmp(argv[2], "train") == 0;
  int64_t batch = atoll(argv[3]), size = atoll(argv[4]);
  int reps = atoi(argv[5]);
  pn_device *cpu = NULL;
  if (pn_device_get("cpu", &cpu) != PN_OK) return die("cpu device");
  pn_set_default_device(cpu);
  pn_shape in = {3, {3, size, size}};
  pn_model *m = NULL;
  if (pn_model_from_file(name, NULL, 0, &in, &m) != PN_OK) return die(name);
  pn_model_set_training(m, training);
  int64_t xs[4] = {batch, 3, size, size}, ys[1] = {batch};
  pn_tensor *x = pn_rand_normal(cpu, 4, xs, 0, 1, 7, 0);
  pn_tensor *yf = pn_rand_uniform(cpu, 1, ys, 0, 1000, 8, 0);
  pn_tensor *y = yf ? pn_cast(yf, PN_I64) : NULL;
  pn_loss *loss = NULL;
  pn_optimizer *o = training ? sgd(m) : NULL;
  if (!x || !y || (training && (!o || pn_loss_create("cross_entropy", NULL, &loss) != PN_OK)))
    return die("setup");
  double *t = calloc((size_t)reps + 1, sizeof *t);
  for (int r = -1; r < reps; r++) { /* one warm-up */
    double t0 = bench_now_s();
    pn_status s = training ? train_step(m, loss, o, x, y) : infer(m, x);
    if (s != PN_OK) return die("step");
    if (r >= 0) t[r] = bench_now_s() - t0;
  }
  qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
  printf("%s %s batch %lld: best %.4f s, median %.4f s\n", name, argv[2], (long long)batch, t[0],
         t[reps / 2]);
  free(t);
  pn_optimizer_free(o);
  pn_loss_free(loss);
  pn_tensor_unref(x), pn_tensor_unref(y), pn_tensor_unref(yf);
  pn_model_free(m);
  return 0;
}
