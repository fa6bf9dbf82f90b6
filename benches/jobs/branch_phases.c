// Event processing whose mix changes from phase to phase: in even phases
// 97% of records are plain values and trades (which call the bulky
// settle()) are rare; in odd phases 97% are trades. A version built with
// one phase's branch weights keeps settle() out of line as a cold call in
// the other. process() runs over one batch per call and is kept out of
// line, as a kernel in another file would be (tierjit samples branch
// biases through calls).
// Usage: branch_phases [records] [passes per phase] [phases] [stable]
#include <stdio.h>
#include <stdlib.h>

struct record {
  unsigned kind;
  int value;
};

struct stats {
  long sum, trades, cancels, errors;
  long hist[16];
};

static long settle(const struct record *r, struct stats *s, long i) {
  long h = r->value;
  for (int k = 0; k < 6; k++)
    h = (h * 6364136223846793005L + i + k) ^ (h >> 29);
  s->hist[h & 15]++;
  return h & 1023;
}

__attribute__((noinline)) static void process(const struct record *recs, long n,
                                              struct stats *s) {
  for (long i = 0; i < n; i++) {
    const struct record *r = &recs[i];
    switch (r->kind) {
    case 0:
      s->sum += r->value;
      break;
    case 1:
      s->trades++;
      s->sum += settle(r, s, i);
      break;
    case 2:
      s->cancels++;
      s->sum -= r->value / 2;
      break;
    default:
      s->errors++;
      s->sum += settle(r, s, -i);
    }
  }
}

static void fill(struct record *recs, long n, unsigned dominant) {
  unsigned x = 2463534242u;
  for (long i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    unsigned roll = x % 1000;
    recs[i].kind = roll < 970 ? dominant : roll < 985 ? 1 - dominant : roll < 998 ? 2 : 9;
    recs[i].value = (int)(x >> 12) - (1 << 19);
  }
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 20000;
  int passes = argc > 2 ? atoi(argv[2]) : 2000;
  int phases = argc > 3 ? atoi(argv[3]) : 4;
  int stable = argc > 4 ? atoi(argv[4]) : 0;
  struct record *recs = malloc(sizeof(struct record) * n);
  struct stats s = {0};
  for (int p = 0; p < phases; p++) {
    fill(recs, n, stable ? 0 : p % 2);
    for (int k = 0; k < passes; k++)
      process(recs, n, &s);
  }
  printf("%ld %ld %ld %ld %ld\n", s.sum, s.trades, s.cancels, s.errors, s.hist[3]);
  free(recs);
  return 0;
}
