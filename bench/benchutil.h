/* What every benchmark program needs to time and compare runs. */
#ifndef PLUGNET_BENCHUTIL_H
#define PLUGNET_BENCHUTIL_H

#define BENCH_MAX_REPS 64

double bench_now_s(void);                           /* monotonic seconds */
int bench_cmp_double(const void *a, const void *b); /* for qsort */
double bench_best(const double *t, int n);
/* Median of peer[i] / ours[i] (n <= BENCH_MAX_REPS): our speed relative to
 * the peer, taken run by run so that a noisy moment hurts both sides. */
double bench_median_ratio(const double *ours, const double *peer, int n);

#endif
