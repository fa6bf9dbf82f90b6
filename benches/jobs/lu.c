// LU decomposition in place (Doolittle, no pivoting) of a diagonally
// dominant matrix: a triangular loop nest whose trip counts change with
// the outer index. Size: -DN=... (default 1500).
#include <stdlib.h>
#include "nest_timer.h"

#ifndef N
#define N 1500
#endif

static void kernel_lu(int n, double (*A)[N]) {
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < i; j++) {
      for (int k = 0; k < j; k++) A[i][j] -= A[i][k] * A[k][j];
      A[i][j] /= A[j][j];
    }
    for (int j = i; j < n; j++)
      for (int k = 0; k < i; k++) A[i][j] -= A[i][k] * A[k][j];
  }
}

int main(void) {
  double(*A)[N] = malloc(sizeof(double[N][N]));
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) A[i][j] = i == j ? N : (double)((i * 7 + j * 3) % 11) / 11.0;
  kernel_start();
  kernel_lu(N, A);
  kernel_stop();
  double sum = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) sum += A[i][j] * ((i + 2 * j) % 5 + 1);
  printf("%.6e\n", sum);
  free(A);
  return 0;
}
