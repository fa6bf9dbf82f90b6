// A hot function whose dominant argument changes every phase, run by
// several threads in step (a barrier between phases): each phase deserves
// a version specialized for its stride. Args: PHASES CALLS THREADS, where
// CALLS is per thread and phase, for a stride of 2 (more calls for larger
// strides, so every phase does the same work; defaults 15 60000 4). See benches/phases.rs.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int data[4096];
static int phases, calls, threads;
static pthread_barrier_t phase_start;

static long kernel(const int *a, long n, int stride) {
  long s = 0;
  for (long i = 0; i < n; i += stride)
    s += (long)a[i] * (i % 7 + 1);
  return s;
}

static void *worker(void *arg) {
  long total = 0;
  for (int p = 0; p < phases; p++) {
    pthread_barrier_wait(&phase_start);
    int stride = 2 + p * 7 % 11;
    // The same work in every phase: more calls when each does less.
    long n = (long)calls * stride / 2;
    for (long k = 0; k < n; k++) total += kernel(data, 4096, stride);
  }
  return (void *)total;
}

int main(int argc, char **argv) {
  phases = argc > 1 ? atoi(argv[1]) : 15;
  calls = argc > 2 ? atoi(argv[2]) : 60000;
  threads = argc > 3 ? atoi(argv[3]) : 4;
  for (int i = 0; i < 4096; i++)
    data[i] = (i * 37) % 101 - 50;
  pthread_barrier_init(&phase_start, 0, threads);
  pthread_t t[64];
  for (long i = 0; i < threads; i++) pthread_create(&t[i], 0, worker, (void *)i);
  long total = 0;
  for (int i = 0; i < threads; i++) {
    void *r;
    pthread_join(t[i], &r);
    total += (long)r;
  }
  printf("%ld\n", total);
  return 0;
}
