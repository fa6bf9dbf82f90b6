// A vectorizable 3-point stencil over 4096 doubles, called 10^5 times:
// the usual shape of a compute job's hot kernel, where O3 (vectorized for
// the host CPU) gains far more over O0 than on call-heavy code.
// Usage: stencil [CALLS] (default 100000).
#include <stdio.h>
#include <stdlib.h>

#define N 4096

void smooth(const double *restrict in, double *restrict out, int n, double w) {
  for (int i = 1; i < n - 1; i++) out[i] = w * in[i] + (1 - w) * 0.5 * (in[i - 1] + in[i + 1]);
  out[0] = in[0];
  out[n - 1] = in[n - 1];
}

int main(int argc, char **argv) {
  long calls = argc > 1 ? atol(argv[1]) : 100000;
  double *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
  for (int i = 0; i < N; i++) a[i] = (i % 17) * 0.25;
  for (long c = 0; c < calls; c++) {
    smooth(a, b, N, 0.5);
    double *t = a;
    a = b;
    b = t;
  }
  double sum = 0;
  for (int i = 0; i < N; i++) sum += a[i] * (i + 1);
  printf("%.6f\n", sum);
  free(a);
  free(b);
  return 0;
}
