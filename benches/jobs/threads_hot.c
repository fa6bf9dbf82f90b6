// Each of T threads (argv[2], default 2) calls the same small function
// ITER times (argv[1]): the same work per thread, so on T cores the wall
// time should not grow with T. Counters that every thread writes (one
// shared cache line) made the 2-thread baseline run 13x as long as the
// 1-thread one; see benches/threads.rs.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long step(unsigned long x, unsigned long i) {
  return x * 2862933555777941757UL + (i ^ (x >> 7));
}

static long iterations;

static void *worker(void *arg) {
  unsigned long x = (unsigned long)(size_t)arg;
  for (long i = 0; i < iterations; i++) x = step(x, (unsigned long)i);
  return (void *)(size_t)(x & 0xffff);
}

int main(int argc, char **argv) {
  iterations = argc > 1 ? atol(argv[1]) : 100000000;
  int threads = argc > 2 ? atoi(argv[2]) : 2;
  pthread_t t[64];
  for (int i = 0; i < threads; i++) pthread_create(&t[i], 0, worker, (void *)(size_t)(i + 1));
  unsigned long sum = 0;
  for (int i = 0; i < threads; i++) {
    void *r;
    pthread_join(t[i], &r);
    sum += (unsigned long)(size_t)r;
  }
  printf("%lu\n", sum);
  return 0;
}
