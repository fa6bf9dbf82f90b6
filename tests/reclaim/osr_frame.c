// A frame that stays inside a loop's continuation while a newer one
// replaces it (reclaim.stress compiles a running loop's continuation once
// more): the retired continuation must not be freed until work() returns.
// tests/reclaim.rs reads "work done" on stderr as the moment it did.
// Args: ITERATIONS (of work's loop) TAIL (of other's loop).
#include <stdio.h>
#include <stdlib.h>

static double work(long n) {
  double s = 0;
  for (long i = 0; i < n; i++)
    s += (double)(i % 7) * 0.5 + (double)(i & 3);
  return s;
}

static long other(long n) {
  long t = 0;
  for (long i = 0; i < n; i++)
    t += i ^ (i >> 3);
  return t;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 30000000;
  long m = argc > 2 ? atol(argv[2]) : 30000000;
  double s = work(n);
  fprintf(stderr, "work done\n");
  long t = other(m);
  printf("%.1f %ld\n", s, t);
  return 0;
}
