// A job thread and `main` each run a loop calling `work`: the trace shows
// both threads, the loop continuations they move to (forced OSR), and
// the compiles.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static double work(long i) { return (double)(i % 13) * 0.5; }

static long iterations;

static void *worker(void *out) {
  double s = 0;
  for (long i = 0; i < iterations; i++)
    s += work(i);
  *(double *)out = s;
  return NULL;
}

int main(int argc, char **argv) {
  iterations = argc > 1 ? atol(argv[1]) : 1000;
  pthread_t thread;
  double theirs = 0, ours = 0;
  pthread_create(&thread, NULL, worker, &theirs);
  for (long i = 0; i < iterations; i++)
    ours += 2 * work(i);
  pthread_join(thread, NULL);
  printf("%.1f %.1f\n", ours, theirs);
  return 0;
}
