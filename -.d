-: /tmp/tierjit-frontend-flags-895/job.c \
  /tmp/tierjit-frontend-flags-895/k.h
