// A dynamic program over a triangular table (optimal split, as in matrix-
// chain or RNA folding): cell (i, j) takes the best over k in [i, j) of
// two smaller cells, filled by decreasing i. Size: -DN=... (default 1900).
#include <stdlib.h>
#include "nest_timer.h"

#ifndef N
#define N 1900
#endif

static int pair_score(int i, int j) { return ((i * 31 + j * 17) % 13) - 4; }

static void kernel_split_dp(int n, int (*T)[N]) {
  for (int i = n - 1; i >= 0; i--) {
    for (int j = i + 1; j < n; j++) {
      int best = T[i][j - 1];
      if (T[i + 1][j] > best) best = T[i + 1][j];
      int both = T[i + 1][j - 1] + pair_score(i, j);
      if (i < j - 1 && both > best) best = both;
      for (int k = i + 1; k < j; k++) {
        int split = T[i][k] + T[k + 1][j];
        if (split > best) best = split;
      }
      T[i][j] = best;
    }
  }
}

int main(void) {
  int(*T)[N] = calloc(N + 1, sizeof(int[N]));
  kernel_start();
  kernel_split_dp(N, T);
  kernel_stop();
  long sum = 0;
  for (int i = 0; i < N; i++)
    for (int j = i; j < N; j++) sum += (long)T[i][j] * ((i + j) % 3 + 1);
  printf("%d %ld\n", T[0][N - 1], sum);
  free(T);
  return 0;
}
