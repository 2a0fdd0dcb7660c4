/* The tape: nodes in the order their ops ran. Walking it backwards visits
 * every consumer of a tensor before its producer, so a node's gradient is
 * complete when the node is reached and no topological sort is needed. */
#include <stdlib.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/ops.h>

#include "internal.h"

#define MAX_SAVED 4

struct pn_node {
  const char *name;
  pn_tensor *in[PN_OP_MAX_INPUTS]; /* NULL for a dropped (weak) input */
  pn_node *src[PN_OP_MAX_INPUTS];  /* a weak input's producer */
  pn_shape in_shape[PN_OP_MAX_INPUTS];
  int needs_grad[PN_OP_MAX_INPUTS];
  int n_in;
  pn_tensor *out; /* owned when keep_out, else cleared if the tensor dies */
  int keep_out;
  pn_tensor *saved[MAX_SAVED];
  int n_saved;
  pn_backward_fn backward;
  void *params;
  pn_tensor *grad; /* accumulated gradient of out */
};

struct pn_hook {
  pn_grad_hook_fn fn;
  void *user;
  struct pn_hook *next;
};

typedef struct tape {
  pn_node **nodes;
  int n, cap;
} tape;

static _Thread_local tape the_tape;
static _Thread_local int grad_off;
/* Forward hooks watch the model, not the ops that compute its gradients. */
static _Thread_local int in_backward;

#define MAX_FWD_HOOKS 16
static struct {
  pn_forward_hook_fn fn;
  void *user;
} fwd_hooks[MAX_FWD_HOOKS];
static int n_fwd_hooks;

int pn_grad_enabled(void) { return !grad_off; }

int pn_set_grad_enabled(int on) {
  int was = !grad_off;
  grad_off = !on;
  return was;
}

void pn_tensor_set_requires_grad(pn_tensor *t, int on) {
  if (t) t->requires_grad = on != 0;
}

pn_tensor *pn_tensor_grad(const pn_tensor *t) { return t ? t->grad : NULL; }

void pn_tensor_zero_grad(pn_tensor *t) {
  if (!t) return;
  pn_tensor_unref(t->grad);
  t->grad = NULL;
}

static int needs_grad(const pn_tensor *t) { return t->requires_grad || t->node != NULL; }

/* Drops what the node holds; the node itself stays on the tape. */
static void node_release(pn_node *n) {
  if (n->out) {
    n->out->node = NULL;
    if (n->keep_out) pn_tensor_unref(n->out);
    n->out = NULL;
  }
  for (int i = 0; i < n->n_in; i++) {
    pn_tensor_unref(n->in[i]);
    n->in[i] = NULL;
  }
  for (int i = 0; i < n->n_saved; i++) {
    pn_tensor_unref(n->saved[i]);
    n->saved[i] = NULL;
  }
  n->n_in = n->n_saved = 0;
  pn_tensor_unref(n->grad);
  n->grad = NULL;
}

static void node_free(pn_node *n) {
  node_release(n);
  free(n->params);
  free(n);
}

void pn_tape_clear(void) {
  /* Newest first: freeing a node may free tensors whose producers are older. */
  while (the_tape.n > 0) node_free(the_tape.nodes[--the_tape.n]);
  free(the_tape.nodes);
  the_tape.nodes = NULL;
  the_tape.cap = 0;
}

int pn_tape_size(void) { return the_tape.n; }

static pn_status tape_push(pn_node *n) {
  if (the_tape.n == the_tape.cap) {
    int cap = the_tape.cap ? the_tape.cap * 2 : 256;
    pn_node **nodes = realloc(the_tape.nodes, sizeof *nodes * (size_t)cap);
    if (!nodes) return pn_error(PN_ERR_NOMEM, "autograd: out of memory growing the tape");
    the_tape.nodes = nodes;
    the_tape.cap = cap;
  }
  the_tape.nodes[the_tape.n++] = n;
  return PN_OK;
}

static int any_needs_grad(pn_tensor *const *in, int n_in) {
  for (int i = 0; i < n_in; i++)
    if (needs_grad(in[i])) return 1;
  return 0;
}

pn_status pn_autograd_record(const char *name, pn_tensor *const *in, int n_in, pn_tensor *out,
                             pn_backward_fn backward, pn_tensor *const *saved, int n_saved,
                             const void *params, size_t params_size, int keep_out) {
  if (grad_off || !any_needs_grad(in, n_in)) return PN_OK;
  if (n_in > PN_OP_MAX_INPUTS || n_saved > MAX_SAVED || !backward || !out)
    return pn_error(PN_ERR_INVALID, "autograd: bad record for op '%s'", name);
  pn_node *n = calloc(1, sizeof *n);
  if (!n || (params_size && !(n->params = malloc(params_size)))) {
    free(n);
    return pn_error(PN_ERR_NOMEM, "autograd: out of memory recording '%s'", name);
  }
  if (params_size) memcpy(n->params, params, params_size);
  n->name = name;
  n->backward = backward;
  n->n_in = n_in;
  for (int i = 0; i < n_in; i++) {
    n->in[i] = pn_tensor_ref(in[i]);
    n->needs_grad[i] = needs_grad(in[i]);
    n->in_shape[i] = pn_tensor_shape(in[i]);
  }
  n->n_saved = n_saved;
  for (int i = 0; i < n_saved; i++) n->saved[i] = pn_tensor_ref(saved[i]);
  n->keep_out = keep_out;
  n->out = keep_out ? pn_tensor_ref(out) : out;
  pn_status s = tape_push(n);
  if (s != PN_OK) {
    n->out = NULL;
    if (keep_out) pn_tensor_unref(out);
    node_free(n);
    return s;
  }
  out->node = n;
  return PN_OK;
}

void pni_autograd_drop_inputs(pn_tensor *out, uint32_t mask) {
  pn_node *n = out ? out->node : NULL;
  for (int i = 0; n && i < n->n_in; i++) {
    if (!(mask >> i & 1) || !n->in[i] || !n->in[i]->node) continue; /* leaves stay */
    n->src[i] = n->in[i]->node;
    pn_tensor_unref(n->in[i]);
    n->in[i] = NULL;
  }
}

void pni_autograd_tensor_freed(pn_tensor *t) {
  if (t->node) t->node->out = NULL;
  for (pn_hook *h = t->hooks, *next; h; h = next) {
    next = h->next;
    free(h);
  }
  t->hooks = NULL;
}

/* ------------------------------------------------------------ backward */

typedef struct leaf_grad {
  pn_tensor *leaf;
  pn_tensor *grad;
} leaf_grad;

typedef struct pass {
  leaf_grad *leaves;
  int n, cap;
} pass;

static pn_tensor *sum_into(pn_tensor *acc, pn_tensor *g) {
  if (!acc) return pn_tensor_ref(g);
  pn_tensor *r = pn_add(acc, g);
  pn_tensor_unref(acc);
  return r;
}

static pn_status add_leaf_grad(pass *p, pn_tensor *leaf, pn_tensor *g) {
  for (int i = 0; i < p->n; i++) {
    if (p->leaves[i].leaf == leaf) {
      p->leaves[i].grad = sum_into(p->leaves[i].grad, g);
      return p->leaves[i].grad ? PN_OK : PN_ERR_INTERNAL;
    }
  }
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 32;
    leaf_grad *l = realloc(p->leaves, sizeof *l * (size_t)cap);
    if (!l) return pn_error(PN_ERR_NOMEM, "autograd: out of memory");
    p->leaves = l;
    p->cap = cap;
  }
  p->leaves[p->n].leaf = pn_tensor_ref(leaf);
  p->leaves[p->n].grad = pn_tensor_ref(g);
  p->n++;
  return PN_OK;
}

static pn_tensor *apply_hooks(pn_tensor *t, pn_tensor *g) {
  for (pn_hook *h = t ? t->hooks : NULL; h && g; h = h->next) {
    pn_tensor *r = h->fn(t, g, h->user);
    if (r) {
      pn_tensor_unref(g);
      g = r;
    }
  }
  return g;
}

/* Input i's gradient goes to its producer, or to the leaf itself. */
static pn_status accumulate_input(pass *p, pn_node *n, int i, pn_tensor *g) {
  char a[96], b[96];
  pn_shape sg = pn_tensor_shape(g);
  if (!pn_shape_equal(&n->in_shape[i], &sg))
    return pn_error(PN_ERR_INTERNAL, "autograd: gradient of shape %s for a tensor of shape %s",
                    pn_shape_str(&sg, a, sizeof a), pn_shape_str(&n->in_shape[i], b, sizeof b));
  pn_node *src = n->in[i] ? n->in[i]->node : n->src[i];
  if (src) {
    src->grad = sum_into(src->grad, g);
    return src->grad ? PN_OK : PN_ERR_INTERNAL;
  }
  return n->in[i]->requires_grad ? add_leaf_grad(p, n->in[i], g) : PN_OK;
}

static pn_status accumulate(pass *p, pn_tensor *t, pn_tensor *g) {
  char a[96], b[96];
  pn_shape st = pn_tensor_shape(t), sg = pn_tensor_shape(g);
  if (!pn_shape_equal(&st, &sg))
    return pn_error(PN_ERR_INTERNAL, "autograd: gradient of shape %s for a tensor of shape %s",
                    pn_shape_str(&sg, a, sizeof a), pn_shape_str(&st, b, sizeof b));
  if (t->node) {
    t->node->grad = sum_into(t->node->grad, g);
    return t->node->grad ? PN_OK : PN_ERR_INTERNAL;
  }
  return t->requires_grad ? add_leaf_grad(p, t, g) : PN_OK;
}

static pn_status run_node(pass *p, pn_node *n) {
  pn_tensor *gin[PN_OP_MAX_INPUTS] = {0};
  pn_tensor *g = apply_hooks(n->out, pn_tensor_ref(n->grad));
  pn_backward_ctx c = {n->in,         n->n_in,       n->out,     n->saved,
                       n->n_saved,    n->needs_grad, n->params,  n->in_shape};
  pn_status s = n->backward(&c, g, gin);
  if (s != PN_OK) pn_error_prefix(s, "backward of '%s': ", n->name);
  for (int i = 0; i < n->n_in; i++) {
    if (s == PN_OK && gin[i]) s = accumulate_input(p, n, i, gin[i]);
    pn_tensor_unref(gin[i]);
  }
  pn_tensor_unref(g);
  return s;
}

static pn_status finish_leaves(pass *p) {
  pn_status s = PN_OK;
  for (int i = 0; i < p->n; i++) {
    pn_tensor *leaf = p->leaves[i].leaf;
    pn_tensor *g = apply_hooks(leaf, p->leaves[i].grad);
    /* A gradient may be a view, or shared with another leaf: keep it only
     * when it is contiguous and nothing else holds it or its buffer. */
    int sole = g && g->refs == 1 && g->buf->refs == 1 && pn_tensor_is_contiguous(g) && !g->node;
    pn_tensor *own = s != PN_OK  ? NULL
                     : leaf->grad ? pn_add(leaf->grad, g)
                     : sole       ? pn_tensor_ref(g)
                                  : pn_copy(g);
    if (s == PN_OK && !own) s = PN_ERR_INTERNAL;
    if (own) {
      pn_tensor_unref(leaf->grad);
      leaf->grad = own;
    }
    pn_tensor_unref(g);
    pn_tensor_unref(leaf);
  }
  free(p->leaves);
  return s;
}

pn_status pn_backward(pn_tensor *out, pn_tensor *gout) {
  pass p = {NULL, 0, 0};
  if (!out) return pn_error(PN_ERR_INVALID, "pn_backward: no tensor");
  if (!needs_grad(out))
    return pn_error(PN_ERR_INVALID, "pn_backward: the tensor does not require a gradient "
                                    "(no input was marked with pn_tensor_set_requires_grad)");
  int was = pn_set_grad_enabled(0);
  in_backward = 1;
  pn_tensor *seed = gout ? pn_tensor_ref(gout) : pn_ones_like(out);
  pn_status s = seed ? accumulate(&p, out, seed) : PN_ERR_NOMEM;
  pn_tensor_unref(seed);
  /* A node's activations go as soon as its backward has run, as PyTorch
   * frees saved tensors: the gradients then grow into memory the forward's
   * activations give back, instead of on top of all of them. */
  for (int i = the_tape.n - 1; i >= 0 && s == PN_OK; i--) {
    pn_node *n = the_tape.nodes[i];
    if (n->grad) s = run_node(&p, n);
    node_release(n);
  }
  pn_status fs = finish_leaves(&p);
  in_backward = 0;
  pn_set_grad_enabled(was);
  pn_tape_clear();
  return s != PN_OK ? s : fs;
}

/* ------------------------------------------------------------ hooks */

pn_status pn_tensor_add_grad_hook(pn_tensor *t, pn_grad_hook_fn fn, void *user) {
  pn_hook *h = malloc(sizeof *h);
  if (!h) return pn_error(PN_ERR_NOMEM, "out of memory adding a hook");
  h->fn = fn;
  h->user = user;
  h->next = NULL;
  pn_hook **tail = &t->hooks;
  while (*tail) tail = &(*tail)->next;
  *tail = h;
  return PN_OK;
}

int pn_add_forward_hook(pn_forward_hook_fn fn, void *user) {
  for (int i = 0; i < MAX_FWD_HOOKS; i++) {
    if (!fwd_hooks[i].fn) {
      fwd_hooks[i].fn = fn;
      fwd_hooks[i].user = user;
      if (i >= n_fwd_hooks) n_fwd_hooks = i + 1;
      return i;
    }
  }
  pn_error(PN_ERR_NOMEM, "at most %d forward hooks", MAX_FWD_HOOKS);
  return -1;
}

void pn_remove_forward_hook(int handle) {
  if (handle >= 0 && handle < MAX_FWD_HOOKS) fwd_hooks[handle].fn = NULL;
}

void pni_autograd_forward_hooks(const char *op, pn_tensor *const *in, int n_in, pn_tensor *out) {
  if (in_backward) return;
  for (int i = 0; i < n_fwd_hooks; i++)
    if (fwd_hooks[i].fn) fwd_hooks[i].fn(op, in, n_in, out, fwd_hooks[i].user);
}
