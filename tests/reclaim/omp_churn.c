// churn.c's workload on OpenMP's threads: libomp (not the job) creates
// them, and they run the job's outlined region, which calls one hot
// function whose specialization changes with the phase. With
// reclaim.stress its two specialized versions swap at every profiler
// tick, so versions are retired and freed under libomp's threads, which
// the thread checks must find and scan like the job's own.
// Args: CALLS (per thread and phase) PHASES. Threads: OMP_NUM_THREADS.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static int data[4096];

__attribute__((noinline)) static long kernel(const int *a, long n, int stride) {
  long s = 0;
  for (long i = 0; i < n; i += stride)
    s += (long)a[i] * (i % 7 + 1);
  return s;
}

int main(int argc, char **argv) {
  long calls = argc > 1 ? atol(argv[1]) : 20000;
  int phases = argc > 2 ? atoi(argv[2]) : 4;
  for (int i = 0; i < 4096; i++)
    data[i] = (i * 37) % 101 - 50;
  long grand = 0;
  for (int p = 0; p < phases; p++) {
    int stride = p % 2 ? 2 : 4;
    long total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (long k = 0; k < calls * 4; k++)
      total += kernel(data, 1024, stride) ^ (k & 3);
    printf("phase %d: %ld\n", p, total);
    grand += total;
  }
  printf("total %ld\n", grand);
  return 0;
}
