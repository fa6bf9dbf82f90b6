// 2-D convolution whose kernel size and image width come from argv: a
// static build compiles the general loops; a JIT that sees the sizes can
// fold them in (the k x k inner loops unroll, the row loop vectorizes).
// Usage: runtime_sizes [k] [width] [height] [frames]
#include <stdio.h>
#include <stdlib.h>

static void conv_row(const float *in, float *out, const float *kern, int k, int width) {
  for (int x = 0; x + k <= width; x++) {
    float s = 0.0f;
    for (int dy = 0; dy < k; dy++)
      for (int dx = 0; dx < k; dx++)
        s += in[dy * width + x + dx] * kern[dy * k + dx];
    out[x] = s;
  }
}

int main(int argc, char **argv) {
  int k = argc > 1 ? atoi(argv[1]) : 3;
  int width = argc > 2 ? atoi(argv[2]) : 512;
  int height = argc > 3 ? atoi(argv[3]) : 256;
  int frames = argc > 4 ? atoi(argv[4]) : 300;
  float *img = malloc(sizeof(float) * width * (height + k));
  float *out = malloc(sizeof(float) * width * height);
  float *kern = malloc(sizeof(float) * k * k);
  for (int i = 0; i < k * k; i++)
    kern[i] = (float)(i % 5 - 2) / 8.0f;
  for (int i = 0; i < width * (height + k); i++)
    img[i] = (float)(i * 31 % 97) / 97.0f;
  double check = 0;
  for (int f = 0; f < frames; f++) {
    img[f % (width * height)] += 0.5f;
    for (int y = 0; y < height; y++)
      conv_row(img + y * width, out + y * width, kern, k, width);
    check += out[(f * 7919) % (width * height)];
  }
  printf("k=%d %dx%d %.4f\n", k, width, height, check);
  free(img);
  free(out);
  free(kern);
  return 0;
}
