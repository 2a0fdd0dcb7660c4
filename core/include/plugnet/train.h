/* Running a pipeline: training with a per-epoch table like fastai's,
 * evaluation, checkpoints (safetensors, atomic) and exact resumption. */
#ifndef PLUGNET_TRAIN_H
#define PLUGNET_TRAIN_H

#include <stdint.h>
#include <stdio.h>
#include <plugnet/pipeline.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What one optimizer step did, for pn_train_options.on_step. */
typedef struct pn_train_step {
  int64_t step;  /* the optimizer's step count after it, from 1 */
  int64_t epoch; /* from 0, counted across stages */
  int stage;     /* from 0 (0 in a run without stages) */
  double lr;     /* the peak rate used (the last group's), after the schedule */
  double loss;
  pn_shape x_shape; /* the batch's input */
} pn_train_step;

typedef struct pn_train_options {
  const char *backend; /* overrides the pipeline's backend; NULL keeps it */
  const char *resume;  /* a checkpoint to continue from; NULL: start afresh */
  FILE *out;           /* the table and results; NULL: stdout */
  FILE *progress;      /* the progress bar or lines; NULL: stderr */
} pn_train_options;
typedef void (*pn_train_step_fn)(const pn_train_step *s, void *user);

typedef struct pn_train_result {
  int64_t epochs_done; /* completed epochs, counting resumed ones */
  int64_t steps;
  double train_loss; /* mean over the last epoch */
  double valid_loss, valid_accuracy;
  double test_loss, test_accuracy;
  int has_valid, has_test;
  int interrupted;       /* Ctrl-C: a checkpoint was saved */
  char checkpoint[1024]; /* the last checkpoint written, or "" */
  double seconds;        /* training time, evaluation included */
} pn_train_result;

/* Trains as the pipeline says, then evaluates on its test set. */
pn_status pn_train(const pn_pipeline *p, const pn_train_options *o, pn_train_result *r);
/* The same, calling on_step (when not NULL) after every optimizer step. */
pn_status pn_train_observed(const pn_pipeline *p, const pn_train_options *o,
                            pn_train_step_fn on_step, void *user, pn_train_result *r);
/* Loads a checkpoint's parameters and evaluates on the validation split
 * (when the pipeline has one) and the test set. */
pn_status pn_evaluate(const pn_pipeline *p, const char *checkpoint, const pn_train_options *o,
                      pn_train_result *r);

/* The learning-rate range test (fastai's lr_find): from the freshly
 * initialised model (frozen as the first stage says), one optimizer step per
 * training batch with the rate growing exponentially from `start` to `end`
 * over `iters` steps, no schedule. The loss is smoothed (exponential average,
 * beta 0.98, debiased); the test stops early once it exceeds 4 times the
 * best. */
typedef struct pn_lr_find_options {
  double start, end;   /* 0: 1e-7 and 10 */
  int iters;           /* 0: 100 */
  const char *backend; /* overrides the pipeline's; NULL keeps it */
  FILE *out;           /* a table of (lr, smoothed loss) every few steps; NULL: none */
} pn_lr_find_options;

typedef struct pn_lr_find_result {
  double *lrs, *losses; /* n of each: the rate of each step, the smoothed loss after it */
  int n;
  int diverged; /* stopped early */
  /* Suggestions, from the curve without its first tenth and last 5 points
   * (as fastai): the rate where the smoothed loss falls fastest, and the
   * minimum's rate / 10. */
  double lr_steep, lr_min;
} pn_lr_find_result;

pn_status pn_lr_find(const pn_pipeline *p, const pn_lr_find_options *o, pn_lr_find_result *r);
void pn_lr_find_result_free(pn_lr_find_result *r);

#ifdef __cplusplus
}
#endif
#endif
