#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static void sweep(const double *in, double *out, int n) {
#pragma omp parallel for schedule(static)
  for (int i = 1; i < n - 1; i++)
    out[i] = 0.25 * in[i - 1] + 0.5 * in[i] + 0.25 * in[i + 1];
}

static double total(const double *a, int n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s)
  for (int i = 0; i < n; i++) s += a[i];
  return s;
}

// A threadprivate variable: kept by libomp, since tierjit compiles
// OpenMP with -fnoopenmp-use-tls (the job may not define thread-local
// storage).
static int regions_seen;
#pragma omp threadprivate(regions_seen)

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100000;
  int steps = argc > 2 ? atoi(argv[2]) : 200;
  double *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
  for (int i = 0; i < n; i++) a[i] = (i % 97) * 0.5;
  for (int t = 0; t < steps; t++) {
    sweep(a, b, n);
    b[0] = a[0]; b[n - 1] = a[n - 1];
    double *tmp = a; a = b; b = tmp;
  }
  long count = 0;
  for (int round = 0; round < 3; round++) {
#pragma omp parallel reduction(+ : count)
    count += ++regions_seen;
  }
  printf("sum %.6f threads-ran %d private %ld\n", total(a, n), count > 0,
         count / omp_get_max_threads());
  free(a); free(b);
  return 0;
}
