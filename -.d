-: /tmp/tierjit-frontend-flags-28847/job.c \
  /tmp/tierjit-frontend-flags-28847/k.h
