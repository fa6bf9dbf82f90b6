// Threads calling one hot function whose specialization changes with the
// phase (stride 4, then 2, then 4, ...), each thread printing what it
// summed. With reclaim.stress the function's two specialized versions are
// swapped at every profiler tick, so versions are retired and freed (and
// loaded again) under the running threads all the time.
// Args: THREADS CALLS (per thread and phase) PHASES.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int data[4096];
static long calls;
static int phases;
static pthread_barrier_t phase_start;

__attribute__((noinline)) static long kernel(const int *a, long n, int stride) {
  long s = 0;
  for (long i = 0; i < n; i += stride)
    s += (long)a[i] * (i % 7 + 1);
  return s;
}

static void *worker(void *arg) {
  long id = (long)arg, total = 0;
  for (int p = 0; p < phases; p++) {
    pthread_barrier_wait(&phase_start);
    int stride = p % 2 ? 2 : 4;
    for (long k = 0; k < calls; k++)
      total += kernel(data, 1024, stride) ^ id;
  }
  return (void *)total;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 8;
  calls = argc > 2 ? atol(argv[2]) : 20000;
  phases = argc > 3 ? atoi(argv[3]) : 4;
  if (threads < 1 || threads > 64)
    return 2;
  for (int i = 0; i < 4096; i++)
    data[i] = (i * 37) % 101 - 50;
  pthread_barrier_init(&phase_start, 0, threads);
  pthread_t t[64];
  for (long i = 0; i < threads; i++)
    pthread_create(&t[i], 0, worker, (void *)i);
  for (int i = 0; i < threads; i++) {
    void *total;
    pthread_join(t[i], &total);
    printf("thread %d: %ld\n", i, (long)total);
  }
  return 0;
}
