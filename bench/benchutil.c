#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "benchutil.h"

double bench_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_best(const double *t, int n) {
  double b = t[0];
  for (int i = 1; i < n; i++) b = fmin(b, t[i]);
  return b;
}

double bench_median_ratio(const double *ours, const double *peer, int n) {
  double r[BENCH_MAX_REPS];
  if (n > BENCH_MAX_REPS) n = BENCH_MAX_REPS;
  for (int i = 0; i < n; i++) r[i] = peer[i] / ours[i];
  qsort(r, (size_t)n, sizeof r[0], bench_cmp_double);
  return n % 2 ? r[n / 2] : 0.5 * (r[n / 2 - 1] + r[n / 2]);
}
