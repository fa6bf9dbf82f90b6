// A map over a large array with a callback chosen at run time by argv[1]
// (square, cube or smooth). A static build cannot inline through the
// pointer; a profile-guided JIT can promote the call and inline it.
// Usage: callback_map [square|cube|smooth] [n] [reps]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef double (*kernel_fn)(double);

static double square(double x) { return x * x; }
static double cube(double x) { return x * x * x; }
static double smooth(double x) { return x * (3.0 - 2.0 * x) * x; }

static void map(kernel_fn f, const double *in, double *out, long n) {
  for (long i = 0; i < n; i++)
    out[i] = f(in[i]);
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "smooth";
  long n = argc > 2 ? atol(argv[2]) : 100000;
  int reps = argc > 3 ? atoi(argv[3]) : 5000;
  kernel_fn f = strcmp(which, "square") == 0 ? square
              : strcmp(which, "cube") == 0   ? cube
                                             : smooth;
  double *in = malloc(sizeof(double) * n), *out = malloc(sizeof(double) * n);
  for (long i = 0; i < n; i++)
    in[i] = (double)(i % 1000) / 1000.0;
  double sum = 0;
  for (int r = 0; r < reps; r++) {
    map(f, in, out, n);
    sum += out[(r * 7919) % n];
  }
  printf("%s %.6f\n", which, sum);
  free(in);
  free(out);
  return 0;
}
