// A pipeline stage applied through a function pointer, whose transform
// changes from phase to phase (a job that switches filters as it goes):
// each new phase's transform is worth promoting and inlining again.
// Usage: callback_phases [elements] [passes per phase] [phases]
#include <stdio.h>
#include <stdlib.h>

typedef double (*transform)(double);

static double scale(double x) { return x * 1.0000001 + 0.5; }
static double damp(double x) { return x * 0.999 - 0.25; }
static double square_root_ish(double x) { return x > 0 ? x * 0.5 + 1.0 / (x + 1.0) : -x; }
static double clamp(double x) { return x > 1e6 ? 1e6 : x < -1e6 ? -1e6 : x; }
static double wobble(double x) { return x + (x > 0 ? -0.125 : 0.125); }

__attribute__((noinline)) static double stage(transform f, double *xs, long n) {
  double s = 0;
  for (long i = 0; i < n; i++) {
    xs[i] = f(xs[i]);
    s += xs[i];
  }
  return s;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 4096;
  int passes = argc > 2 ? atoi(argv[2]) : 20000;
  int phases = argc > 3 ? atoi(argv[3]) : 6;
  static const transform cycle[] = {scale, damp, square_root_ish, clamp, wobble};
  double *xs = malloc(sizeof(double) * n);
  for (long i = 0; i < n; i++)
    xs[i] = (double)(i % 97) - 48.0;
  double total = 0;
  for (int p = 0; p < phases; p++)
    for (int k = 0; k < passes; k++)
      total += stage(cycle[p % 5], xs, n);
  printf("%.6e\n", total);
  free(xs);
  return 0;
}
