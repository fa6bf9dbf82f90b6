// Event processing with skewed branches: 97% of records take one switch
// case, errors are rare, and a clamp is almost never needed. Which way the
// branches go is known only from running it.
// Usage: skewed_branches [records] [passes]
#include <stdio.h>
#include <stdlib.h>

struct record {
  unsigned kind;
  int value;
};

struct stats {
  long sum, trades, cancels, errors, clamps;
  long hist[16];
};

static long settle(const struct record *r, struct stats *s, long i) {
  // Rare and bulky: kept out of the hot path when the profile says so.
  long h = r->value;
  for (int k = 0; k < 24; k++)
    h = (h * 6364136223846793005L + i + k) ^ (h >> 29);
  s->hist[h & 15]++;
  return h & 1023;
}

static void process(const struct record *recs, long n, struct stats *s) {
  for (long i = 0; i < n; i++) {
    const struct record *r = &recs[i];
    switch (r->kind) {
    case 0:
      s->sum += r->value;
      if (r->value > 1000000) {
        s->clamps++;
        s->sum -= r->value - 1000000;
      }
      break;
    case 1:
      s->trades++;
      s->sum += settle(r, s, i);
      break;
    case 2:
      s->cancels++;
      s->sum -= r->value / 2;
      break;
    case 3:
    case 4:
      s->sum ^= r->value;
      break;
    default:
      s->errors++;
      s->sum += settle(r, s, -i);
    }
  }
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  int passes = argc > 2 ? atoi(argv[2]) : 400;
  struct record *recs = malloc(sizeof(struct record) * n);
  unsigned x = 2463534242u;
  for (long i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    unsigned roll = x % 1000;
    recs[i].kind = roll < 970 ? 0 : roll < 985 ? 1 : roll < 995 ? 2 : roll < 998 ? 3 : 9;
    recs[i].value = (int)(x >> 12) - (1 << 19);
  }
  struct stats s = {0};
  for (int p = 0; p < passes; p++)
    process(recs, n, &s);
  printf("%ld %ld %ld %ld %ld %ld\n", s.sum, s.trades, s.cancels, s.errors, s.clamps, s.hist[3]);
  free(recs);
  return 0;
}
