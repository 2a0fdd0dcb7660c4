/* A fixed pool of workers, each bound to a physical core by hwloc; the
 * calling thread takes part as worker 0. Used by the cpu backend. */
#ifndef PLUGNET_THREADPOOL_H
#define PLUGNET_THREADPOOL_H

#include <stdint.h>
#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_threadpool pn_threadpool;

/* fn(arg, begin, end, worker) runs once per worker with a contiguous slice. */
typedef void (*pn_parallel_fn)(void *arg, int64_t begin, int64_t end, int worker);

/* n_threads <= 0: one per physical core (see topology.h). */
pn_status pn_threadpool_create(int n_threads, int bind, pn_threadpool **out);
void pn_threadpool_free(pn_threadpool *p);
int pn_threadpool_size(const pn_threadpool *p);
/* Splits [0, n) into slices no smaller than `grain` and runs them, returning
 * when all are done. Runs inline when one slice suffices. `worker` is unique
 * only among the slices of one call: calls that run inline (nested, pool busy
 * with another caller, NULL pool, after fork) run as worker 0, so scratch
 * space indexed by `worker` must not be shared across such calls. n <= 0
 * does nothing. */
void pn_threadpool_parallel_for(pn_threadpool *p, int64_t n, int64_t grain, pn_parallel_fn fn,
                                void *arg);
/* The process-wide pool, created on first use. */
pn_threadpool *pn_threadpool_global(void);

#ifdef __cplusplus
}
#endif
#endif
