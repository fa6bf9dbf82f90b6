// All-pairs shortest paths (Floyd-Warshall) written as a triple loop
// directly in main: no function boundary, so only OSR can move it to
// optimized code. Size: -DN=... (default 1250).
#include <stdlib.h>
#include "nest_timer.h"

#ifndef N
#define N 1250
#endif

int main(void) {
  int(*D)[N] = malloc(sizeof(int[N][N]));
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++)
      D[i][j] = i == j ? 0 : ((i * 37 + j * 91) % 53 == 0 ? 1 + (i + j) % 29 : 999999);
  kernel_start();
  for (int k = 0; k < N; k++)
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++)
        if (D[i][k] + D[k][j] < D[i][j]) D[i][j] = D[i][k] + D[k][j];
  kernel_stop();
  long sum = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) sum += D[i][j] % 1000;
  printf("%ld\n", sum);
  free(D);
  return 0;
}
