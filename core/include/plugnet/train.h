/* Running a pipeline: training with a per-epoch table like fastai's,
 * evaluation, checkpoints (safetensors, atomic) and exact resumption. */
#ifndef PLUGNET_TRAIN_H
#define PLUGNET_TRAIN_H

#include <stdint.h>
#include <stdio.h>
#include <plugnet/pipeline.h>
#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_train_options {
  const char *backend; /* overrides the pipeline's backend; NULL keeps it */
  const char *resume;  /* a checkpoint to continue from; NULL: start afresh */
  FILE *out;           /* the table and results; NULL: stdout */
  FILE *progress;      /* the progress bar or lines; NULL: stderr */
} pn_train_options;

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
/* Loads a checkpoint's parameters and evaluates on the validation split
 * (when the pipeline has one) and the test set. */
pn_status pn_evaluate(const pn_pipeline *p, const char *checkpoint, const pn_train_options *o,
                      pn_train_result *r);

#ifdef __cplusplus
}
#endif
#endif
