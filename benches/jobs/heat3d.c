// 3-D heat equation over time steps: a time loop around two triple
// nests. Sizes: -DN=... -DSTEPS=... (defaults 120 and 320).
#include <stdlib.h>
#include "nest_timer.h"

#ifndef N
#define N 120
#endif
#ifndef STEPS
#define STEPS 320
#endif

static void kernel_heat_3d(int steps, int n, double (*A)[N][N], double (*B)[N][N]) {
  for (int t = 1; t <= steps; t++) {
    for (int i = 1; i < n - 1; i++)
      for (int j = 1; j < n - 1; j++)
        for (int k = 1; k < n - 1; k++)
          B[i][j][k] = 0.125 * (A[i + 1][j][k] - 2.0 * A[i][j][k] + A[i - 1][j][k]) +
                       0.125 * (A[i][j + 1][k] - 2.0 * A[i][j][k] + A[i][j - 1][k]) +
                       0.125 * (A[i][j][k + 1] - 2.0 * A[i][j][k] + A[i][j][k - 1]) + A[i][j][k];
    for (int i = 1; i < n - 1; i++)
      for (int j = 1; j < n - 1; j++)
        for (int k = 1; k < n - 1; k++)
          A[i][j][k] = 0.125 * (B[i + 1][j][k] - 2.0 * B[i][j][k] + B[i - 1][j][k]) +
                       0.125 * (B[i][j + 1][k] - 2.0 * B[i][j][k] + B[i][j - 1][k]) +
                       0.125 * (B[i][j][k + 1] - 2.0 * B[i][j][k] + B[i][j][k - 1]) + B[i][j][k];
  }
}

int main(void) {
  double(*A)[N][N] = malloc(sizeof(double[N][N][N]));
  double(*B)[N][N] = malloc(sizeof(double[N][N][N]));
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++)
      for (int k = 0; k < N; k++) A[i][j][k] = B[i][j][k] = (double)(i + j + (N - k)) * 10 / N;
  kernel_start();
  kernel_heat_3d(STEPS, N, A, B);
  kernel_stop();
  double sum = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++)
      for (int k = 0; k < N; k++) sum += A[i][j][k] * ((i + j + k) % 4 + 1);
  printf("%.6e\n", sum);
  free(A);
  free(B);
  return 0;
}
