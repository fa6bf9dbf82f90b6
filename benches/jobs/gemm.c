// Dense matrix multiply, C = alpha*A*B + beta*C, one call of a loop nest
// (i, k, j order: the inner loop is unit-stride and vectorizes).
// Size: -DN=... (default 1500).
#include <stdlib.h>
#include "nest_timer.h"

#ifndef N
#define N 1500
#endif

static void kernel_gemm(int n, double alpha, double beta, double (*C)[N], double (*A)[N],
                        double (*B)[N]) {
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < n; j++) C[i][j] *= beta;
    for (int k = 0; k < n; k++)
      for (int j = 0; j < n; j++) C[i][j] += alpha * A[i][k] * B[k][j];
  }
}

int main(void) {
  double(*A)[N] = malloc(sizeof(double[N][N]));
  double(*B)[N] = malloc(sizeof(double[N][N]));
  double(*C)[N] = malloc(sizeof(double[N][N]));
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      A[i][j] = (double)((i * j + 1) % N) / N;
      B[i][j] = (double)((i * (j + 1) + 2) % N) / N;
      C[i][j] = (double)((i * (j + 2) + 3) % N) / N;
    }
  kernel_start();
  kernel_gemm(N, 1.5, 1.2, C, A, B);
  kernel_stop();
  double sum = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) sum += C[i][j] * ((i + j) % 7 + 1);
  printf("%.6e\n", sum);
  free(A);
  free(B);
  free(C);
  return 0;
}
