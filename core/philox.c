/* Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3", SC'11): a counter-based generator, so element i of a random tensor is
 * a pure function of (seed, i) on every backend and thread count. */
#include <math.h>

#include <plugnet/op.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  *lo = (uint32_t)p;
}

void pn_philox4x32(uint64_t seed, uint64_t counter, uint32_t r[4]) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; round++) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(PHILOX_M0, c0, &hi0, &lo0);
    mulhilo(PHILOX_M1, c2, &hi1, &lo1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  r[0] = c0;
  r[1] = c1;
  r[2] = c2;
  r[3] = c3;
}

/* 24 random bits give every float in [0, 1) a uniform chance of exactness. */
static double unit_open(uint32_t w) { return ((w >> 8) + 0.5) * (1.0 / 16777216.0); }

float pn_random_value(int kind, double alpha, double beta, uint64_t seed, uint64_t index) {
  uint32_t r[4];
  pn_philox4x32(seed, index, r);
  switch (kind) {
  case PN_RANDOM_UNIFORM:
    return (float)(alpha + (beta - alpha) * ((r[0] >> 8) * (1.0 / 16777216.0)));
  case PN_RANDOM_NORMAL: {
    double u1 = unit_open(r[0]), u2 = unit_open(r[1]);
    return (float)(alpha + beta * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
  }
  case PN_RANDOM_BERNOULLI: return unit_open(r[0]) < alpha ? 1.0f : 0.0f;
  default: return 0.0f;
  }
}
