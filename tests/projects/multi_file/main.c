#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>
#include "util.h"

static int scale = 3;

__attribute__((weak)) int weak_default(void) { return -1; }

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 3000;
  static unsigned char buf[4096];
  for (int i = 0; i < 4096; i++) buf[i] = (unsigned char)(i * 7 + scale);
  unsigned long total = 0;
  long mixed = 0;
  for (int r = 0; r < rounds; r++) {
    total += checksum(buf, sizeof buf) + (unsigned long)square(r % 11);
    mixed = mix(mixed, r);
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, buf, sizeof buf);
  unsigned char packed[8192];
  uLongf packed_len = sizeof packed;
  int z = compress(packed, &packed_len, buf, sizeof buf);
  printf("total %lu mixed %ld crc %08lx compress %d weak %d\n", total, mixed,
         (unsigned long)crc, z, weak_default());
  return 0;
}
