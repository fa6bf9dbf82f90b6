// Kernel-region timing for the loop-nest jobs: the time between
// kernel_start() and kernel_stop() goes to stderr as "kernel-seconds S",
// so stdout (the checksum) stays identical across tiers and native builds.
#include <stdio.h>
#include <time.h>

static struct timespec kernel_started;

static void kernel_start(void) { clock_gettime(CLOCK_MONOTONIC, &kernel_started); }

static void kernel_stop(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double s = (now.tv_sec - kernel_started.tv_sec) + (now.tv_nsec - kernel_started.tv_nsec) * 1e-9;
  fprintf(stderr, "kernel-seconds %.6f\n", s);
}
