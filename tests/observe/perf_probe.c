// Records where `kernel` called `probe` from: its first call runs the
// baseline, its last the optimized version (in batch mode at calls=100).
// Prints the process id (whose perf map that is) and both addresses.
#include <stdio.h>
#include <unistd.h>

static void *seen[2];

__attribute__((noinline)) static void probe(int k) {
  seen[k] = __builtin_return_address(0);
}

__attribute__((noinline)) long kernel(long n, int k) {
  long s = 0;
  for (long i = 0; i < n; i++)
    s += i * i % 7;
  probe(k);
  return s;
}

int main(void) {
  long s = kernel(10, 0);
  for (int i = 0; i < 300; i++)
    s += kernel(1000, 1);
  printf("%d %p %p %ld\n", (int)getpid(), seen[0], seen[1], s);
  return 0;
}
