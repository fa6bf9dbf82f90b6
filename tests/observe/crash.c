// Crashes in `hot` once it runs optimized (batch mode tiers it up at its
// 1000th call), called from `mid` and `main`, which run baseline code.
#include <stdio.h>
#include <stdlib.h>

volatile int *nowhere;

static int hot(int i) {
  if (i == 5000)
    return *nowhere;
  return i & 3;
}

static long mid(int n) {
  long s = 0;
  for (int i = 0; i < n; i++)
    s += hot(i);
  return s;
}

int main(int argc, char **argv) {
  printf("%ld\n", mid(argc > 1 ? atoi(argv[1]) : 10));
  return 0;
}
