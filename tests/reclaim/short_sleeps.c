// Threads looping on short nanosleep and poll calls, counting those that
// fail, while others churn a hot function's versions (reclaim.stress), so
// checks of the threads run all the time. A check that signals a thread
// as it enters a sleep ends that sleep with EINTR (a hostile test saw
// it); on x86-64 a sleeping thread is checked without a signal, and one
// caught running is looked at again before it is. Natively every count
// is 0. Prints the workers' sum, then (on stderr, which tests/reclaim.rs
// reads) the sleeps made and those that failed.
// Args: CALLS (per worker and phase) PHASES.
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int data[4096];
static long calls;
static int phases;
static volatile int done;
static long failed[4], made[4];
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

static void *sleeper(void *arg) {
  long id = (long)arg;
  while (!done) {
    struct timespec nap = {0, 300000};
    if (id % 2 ? poll(0, 0, 1) < 0 : nanosleep(&nap, 0) != 0)
      failed[id]++;
    made[id]++;
  }
  return 0;
}

int main(int argc, char **argv) {
  calls = argc > 1 ? atol(argv[1]) : 100000;
  phases = argc > 2 ? atoi(argv[2]) : 4;
  for (int i = 0; i < 4096; i++)
    data[i] = (i * 37) % 101 - 50;
  pthread_t sleepers[4], workers[2];
  for (long i = 0; i < 4; i++)
    pthread_create(&sleepers[i], 0, sleeper, (void *)i);
  pthread_barrier_init(&phase_start, 0, 2);
  for (long i = 0; i < 2; i++)
    pthread_create(&workers[i], 0, worker, (void *)i);
  long sum = 0;
  for (int i = 0; i < 2; i++) {
    void *total;
    pthread_join(workers[i], &total);
    sum += (long)total;
  }
  done = 1;
  for (int i = 0; i < 4; i++)
    pthread_join(sleepers[i], 0);
  printf("workers: %ld\n", sum);
  fprintf(stderr, "sleeps: %ld made, %ld failed\n", made[0] + made[1] + made[2] + made[3],
          failed[0] + failed[1] + failed[2] + failed[3]);
  return 0;
}
