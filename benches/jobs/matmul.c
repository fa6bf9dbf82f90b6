// Dense matrix multiply whose whole work is one loop nest in main, called
// once: only on-stack replacement can move it off baseline code.
// Usage: matmul [N] (default 1200).
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1200;
  double *a = malloc(sizeof(double) * n * n), *b = malloc(sizeof(double) * n * n),
         *c = calloc((size_t)n * n, sizeof(double));
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      a[i * n + j] = (double)((i * 7 + j * 3) % 13) - 6.0;
      b[i * n + j] = (double)((i * 5 + j * 11) % 17) - 8.0;
    }
  for (int i = 0; i < n; i++)
    for (int k = 0; k < n; k++) {
      double aik = a[i * n + k];
      for (int j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j];
    }
  double trace = 0, sum = 0;
  for (int i = 0; i < n; i++) {
    trace += c[i * n + i];
    for (int j = 0; j < n; j++) sum += c[i * n + j] * ((i + j) % 3 - 1);
  }
  printf("trace %.1f weighted %.1f\n", trace, sum);
  free(a);
  free(b);
  free(c);
  return 0;
}
