// An OpenMP 2-D Jacobi stencil with a reduction of the change per sweep:
// the parallel-loop shape of a compute job on a board's cores. Each sweep
// is a parallel region (outlined by clang, run by libomp's threads).
// Usage: omp_stencil [SWEEPS] [N] (defaults 2000, 512); threads from
// OMP_NUM_THREADS. Prints the grid's checksum and the last change.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static double sweep(const double *in, double *out, int n) {
  double change = 0;
#pragma omp parallel for reduction(+ : change) schedule(static)
  for (int i = 1; i < n - 1; i++) {
    for (int j = 1; j < n - 1; j++) {
      double v = 0.25 * (in[(i - 1) * n + j] + in[(i + 1) * n + j] + in[i * n + j - 1] +
                         in[i * n + j + 1]);
      double d = v - in[i * n + j];
      change += d * d;
      out[i * n + j] = v;
    }
  }
  return change;
}

int main(int argc, char **argv) {
  int sweeps = argc > 1 ? atoi(argv[1]) : 2000;
  int n = argc > 2 ? atoi(argv[2]) : 512;
  double *a = calloc((size_t)n * n, sizeof *a), *b = calloc((size_t)n * n, sizeof *b);
  for (int j = 0; j < n; j++) {
    a[j] = b[j] = 100.0;                       // a hot top edge
    a[(n - 1) * n + j] = b[(n - 1) * n + j] = (j % 7) * 1.5;
  }
  double change = 0;
  for (int s = 0; s < sweeps; s++) {
    change = sweep(a, b, n);
    double *t = a;
    a = b;
    b = t;
  }
  double sum = 0;
  for (long k = 0; k < (long)n * n; k++) sum += a[k] * (double)(k % 13 + 1);
  printf("checksum %.6e change %.6e\n", sum, change);
  free(a);
  free(b);
  return 0;
}
