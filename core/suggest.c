/* "Did you mean ...?" for every unknown name: the candidate at the smallest
 * Levenshtein distance, when it is close enough to be a plausible typo. */
#include <stdlib.h>
#include <string.h>

#include <plugnet/registry.h>

/* Two rows of the edit-distance table suffice. Returns -1 without memory. */
static int levenshtein(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  int *prev = malloc(sizeof *prev * (lb + 1)), *cur = malloc(sizeof *cur * (lb + 1));
  if (!prev || !cur) {
    free(prev);
    free(cur);
    return -1;
  }
  for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int del = prev[j] + 1, ins = cur[j - 1] + 1;
      int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
      int best = del < ins ? del : ins;
      cur[j] = sub < best ? sub : best;
    }
    int *t = prev;
    prev = cur;
    cur = t;
  }
  int d = prev[lb];
  free(prev);
  free(cur);
  return d;
}

const char *pn_suggest(const char *word, const char *const *candidates, int n) {
  if (!word || !candidates) return NULL;
  int len = (int)strlen(word);
  int limit = len / 3 > 2 ? len / 3 : 2;
  const char *best = NULL;
  int best_d = limit + 1;
  for (int i = 0; i < n; i++) {
    if (!candidates[i]) continue;
    int d = levenshtein(word, candidates[i]);
    if (d >= 0 && d < best_d) {
      best_d = d;
      best = candidates[i];
    }
  }
  return best;
}
