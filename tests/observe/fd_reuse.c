// Closes every descriptor it did not open, then writes a log of its own:
// what tierjit writes at exit (trace, timeline, perf map) must not land
// in it. Then calls `exit` from a thread, which ends the job there.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *log_path;

static long work(long i) { return i % 11; }

static void *finish(void *unused) {
  (void)unused;
  long s = 0;
  for (long i = 0; i < 2000000; i++)
    s += work(i);
  printf("%ld\n", s);
  fflush(stdout);
  exit(3);
}

int main(int argc, char **argv) {
  log_path = argc > 1 ? argv[1] : "job.log";
  for (int fd = 3; fd < 1024; fd++)
    close(fd);
  FILE *log = fopen(log_path, "w");
  if (!log)
    return 1;
  // Kept open to the end, at a descriptor tierjit's files may have had.
  setvbuf(log, NULL, _IONBF, 0);
  fprintf(log, "the job's own log\n");
  pthread_t thread;
  pthread_create(&thread, NULL, finish, NULL);
  pthread_join(thread, NULL);
  return 0;
}
