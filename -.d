-: /tmp/tierjit-frontend-flags-21469/job.c \
  /tmp/tierjit-frontend-flags-21469/k.h
