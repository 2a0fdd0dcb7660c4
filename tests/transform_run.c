/* The plugnet side of tests/transforms_torch.sh:
 *   transform_run IN W H OUT KEY STREAM [FEATURE[:k=v,k=v] ...]
 * reads IN, W x H raw RGB bytes, runs the chain (each FEATURE with its
 * parameters) on it with the random stream (KEY, STREAM), writes the
 * 3 x h x w floats to OUT, and prints "w h" and the view's matrix, from
 * which the comparison reads what was drawn (e.g. a rotation's angle). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/plugnet.h>

#define MAX_STEPS 16

static int fail(const char *what) {
  fprintf(stderr, "transform_run: %s: %s\n", what, pn_last_error());
  return 1;
}

static pn_status read_raw(const char *path, int w, int h, pn_image *img) {
  PN_TRY(pn_image_alloc(img, w, h));
  FILE *f = fopen(path, "rb");
  size_t n = (size_t)w * (size_t)h * 3;
  int ok = f && fread(img->data, 1, n, f) == n;
  if (f) fclose(f);
  return ok ? PN_OK : pn_error(PN_ERR_IO, "%s: cannot read %zu bytes", path, n);
}

/* "feature:k=v,k=v" into the feature's name (in place) and its config. */
static pn_status parse_step(char *arg, const char **name, pn_config **cfg) {
  char *colon = strchr(arg, ':');
  if (colon) *colon = '\0';
  *name = arg;
  const pn_feature_info *f = pn_registry_find(arg);
  if (!f) return PN_ERR_NOT_FOUND;
  *cfg = pn_config_new(f);
  if (!*cfg) return PN_ERR_NOMEM;
  return colon ? pn_config_set_list(*cfg, colon + 1) : PN_OK;
}

static pn_status run(pn_transforms *t, const pn_image *img, uint64_t key, uint64_t stream,
                     const char *out) {
  pn_rng r = pn_rng_make(key, stream);
  pn_view v;
  pn_transforms_view(t, img->w, img->h, &r, &v);
  size_t n = 3 * (size_t)v.w * (size_t)v.h;
  float *x = malloc(sizeof *x * n);
  if (!x) return pn_error(PN_ERR_NOMEM, "out of memory");
  pn_transforms_finish(t, &v, img, &r, x);
  FILE *f = fopen(out, "wb");
  int ok = f && fwrite(x, sizeof *x, n, f) == n;
  if (f && fclose(f) != 0) ok = 0;
  free(x);
  if (!ok) return pn_error(PN_ERR_IO, "%s: cannot write", out);
  printf("%d %d", v.w, v.h);
  for (int k = 0; k < 9; k++) printf(" %.17g", v.m[k]);
  printf("\n");
  return PN_OK;
}

int main(int argc, char **argv) {
  if (argc < 7 || argc - 7 > MAX_STEPS) {
    fprintf(stderr, "usage: transform_run IN W H OUT KEY STREAM [FEATURE[:k=v,...] ...]\n");
    return 2;
  }
  const char *names[MAX_STEPS];
  pn_config *cfgs[MAX_STEPS] = {0};
  int n = 0, rc = 0;
  pn_image img = {0, 0, NULL};
  pn_transforms *t = NULL;
  if (read_raw(argv[1], atoi(argv[2]), atoi(argv[3]), &img) != PN_OK) rc = fail("input");
  for (; rc == 0 && n < argc - 7; n++)
    if (parse_step(argv[7 + n], &names[n], &cfgs[n]) != PN_OK) rc = fail(argv[7 + n]);
  if (rc == 0 && pn_transforms_new(names, (const pn_config *const *)cfgs, n, 1.0, &t) != PN_OK)
    rc = fail("chain");
  if (rc == 0 &&
      run(t, &img, strtoull(argv[5], NULL, 0), strtoull(argv[6], NULL, 0), argv[4]) != PN_OK)
    rc = fail("run");
  pn_transforms_free(t);
  for (int k = 0; k < n + 1 && k < MAX_STEPS; k++) pn_config_free(cfgs[k]);
  pn_image_free(&img);
  return rc;
}
