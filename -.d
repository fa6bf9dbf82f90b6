-: /tmp/tierjit-frontend-flags-8409/job.c \
  /tmp/tierjit-frontend-flags-8409/k.h
