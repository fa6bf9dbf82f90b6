// 2-D Jacobi relaxation over time steps: a time loop around two 2-D
// sweeps. Sizes: -DN=... -DSTEPS=... (defaults 1300 and 500).
#include <stdlib.h>
#include "nest_timer.h"

#ifndef N
#define N 1300
#endif
#ifndef STEPS
#define STEPS 500
#endif

static void kernel_jacobi_2d(int steps, int n, double (*A)[N], double (*B)[N]) {
  for (int t = 0; t < steps; t++) {
    for (int i = 1; i < n - 1; i++)
      for (int j = 1; j < n - 1; j++)
        B[i][j] = 0.2 * (A[i][j] + A[i][j - 1] + A[i][j + 1] + A[i + 1][j] + A[i - 1][j]);
    for (int i = 1; i < n - 1; i++)
      for (int j = 1; j < n - 1; j++)
        A[i][j] = 0.2 * (B[i][j] + B[i][j - 1] + B[i][j + 1] + B[i + 1][j] + B[i - 1][j]);
  }
}

int main(void) {
  double(*A)[N] = malloc(sizeof(double[N][N]));
  double(*B)[N] = malloc(sizeof(double[N][N]));
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      A[i][j] = ((double)i * (j + 2) + 2) / N;
      B[i][j] = ((double)i * (j + 3) + 3) / N;
    }
  kernel_start();
  kernel_jacobi_2d(STEPS, N, A, B);
  kernel_stop();
  double sum = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) sum += A[i][j] * ((i + j) % 3 + 1);
  printf("%.6e\n", sum);
  free(A);
  free(B);
  return 0;
}
